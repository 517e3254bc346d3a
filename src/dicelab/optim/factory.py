"""Build the optimizer a configuration names: a base optimizer, optionally perturbation-wrapped."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from dicelab.config import OptimizerConfig
from dicelab.exceptions import ConfigError
from dicelab.optim._base import PerturbedOptimizer
from dicelab.optim.distributed import DistributedMRWP
from dicelab.optim.mrwp import MARWP, MRWP
from dicelab.optim.rwp import ARWP, RWP
from dicelab.optim.sam import SAM

#: ``optimizer.perturbation`` name → (class, fixed arguments, its default ρ or σ).
PERTURBATIONS: dict[str, tuple[type[PerturbedOptimizer], dict[str, Any], dict[str, float]]] = {
    "sam": (SAM, {"adaptive": False}, {"rho": 0.05}),
    "asam": (SAM, {"adaptive": True}, {"rho": 2.0}),
    "rwp": (RWP, {}, {"sigma": 0.01}),
    "arwp": (ARWP, {}, {"sigma": 0.01}),
    "mrwp": (MRWP, {}, {"sigma": 0.015}),
    "marwp": (MARWP, {}, {"sigma": 0.015}),
}


def resolve_perturbation(config: OptimizerConfig) -> None:
    """Fill in the chosen wrapper's default ρ or σ where the configuration leaves it out."""
    entry = PERTURBATIONS.get(config.perturbation)
    if entry is None:
        return
    for name, default in entry[2].items():
        if getattr(config, name) is None:
            setattr(config, name, default)


def base_optimizer(config: OptimizerConfig) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    """The ``torch.optim`` class and keyword arguments of the configured base optimizer.

    ``momentum`` is PyTorch's SGD with momentum (heavy ball, v ← μv + g, w ← w − ηv), which
    for a constant learning rate takes the same steps as the Keras form the authors used.
    Adam's epsilon defaults to Keras' 1e-7.
    """
    if config.name == "adam":
        return torch.optim.Adam, {
            "lr": config.lr,
            "betas": (config.beta1, config.beta2),
            "eps": config.eps,
            "weight_decay": config.weight_decay,
        }
    momentum = config.momentum if config.name == "momentum" else 0.0
    return torch.optim.SGD, {
        "lr": config.lr,
        "momentum": momentum,
        "weight_decay": config.weight_decay,
    }


def build_optimizer(
    config: OptimizerConfig,
    params: Iterable[nn.Parameter],
    *,
    total_steps: int | None = None,
    seed: int = 0,
    distributed: bool = False,
) -> torch.optim.Optimizer:
    """The optimizer ``config`` describes for ``params``.

    Args:
        config: the optimizer section of a run configuration.
        params: the model's parameters.
        total_steps: updates planned for the run (the cosine σ schedule needs it).
        seed: seed of the perturbation's random stream.
        distributed: this process is one rank of a torchrun job running parallel m-RWP
            (:class:`~dicelab.optim.distributed.DistributedMRWP`); only ``mrwp`` and
            ``marwp`` parallelise.
    """
    base, kwargs = base_optimizer(config)
    if distributed and config.perturbation not in ("mrwp", "marwp"):
        raise ConfigError(
            "optimizer.perturbation",
            config.perturbation,
            "a torchrun job with several processes runs parallel m-RWP: use mrwp or marwp "
            "(or launch one process)",
        )
    entry = PERTURBATIONS.get(config.perturbation)
    if entry is None:
        return base(params, **kwargs)
    cls, fixed, defaults = entry
    options: dict[str, Any] = {
        name: default if getattr(config, name) is None else getattr(config, name)
        for name, default in defaults.items()
    }
    if issubclass(cls, RWP):
        options.update(
            sigma_schedule=config.sigma_schedule,
            sigma_inc=config.sigma_inc,
            total_steps=total_steps,
        )
    if cls in (ARWP, MARWP):
        options.update(eta=config.eta, beta=config.beta)
    if issubclass(cls, MRWP):
        options.update(lam=config.lam, batches=config.mix_batches)
    if distributed:
        cls = DistributedMRWP
    return cls(params, base, seed=seed, **fixed, **options, **kwargs)
