"""Build the optimizer a configuration names: a base optimizer (with its weight-decay groups and
gradient clipping), optionally perturbation-wrapped."""

from __future__ import annotations

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


#: Perturbations whose noise adapts to the history of squared gradients F ← β·F + g², and so
#: to the scale of the loss.
ADAPTIVE = ("arwp", "marwp")


def check_reduction(perturbation: str, reduction: str) -> None:
    """Refuse an adaptive perturbation (ARWP, m-ARWP) on a summed loss.

    The noise is divided by ``sqrt(1 + η·F)`` with ``F`` a sum of squared gradients. The
    authors train on the batch-mean cross-entropy (nblt/mARWP ``train_rwp_cos.py`` L239,
    ``train_marwp.py`` L210), for which their η = 0.1 is tuned; the gradient of a summed loss
    is B times larger, so ``F`` grows by about B² (65,536 at batch 256) and the noise all but
    vanishes: the method silently becomes plain SGD.

    Raises:
        ConfigError: naming ``train.reduction`` when ``perturbation`` is adaptive and
            ``reduction`` is not ``mean``.
    """
    if perturbation in ADAPTIVE and reduction != "mean":
        raise ConfigError(
            "train.reduction",
            reduction,
            f"must be mean with optimizer.perturbation={perturbation}: its adaptive noise "
            "divides by sqrt(1 + eta*F), F the squared gradients, which a summed loss inflates "
            "by about batch_size^2, switching the adaptive noise off",
        )


def base_optimizer(config: OptimizerConfig) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    """The ``torch.optim`` class and keyword arguments of the configured base optimizer.

    ``momentum`` is PyTorch's SGD with momentum (heavy ball, v ← μv + g, w ← w − ηv), which
    for a constant learning rate takes the same steps as the Keras form the authors used; with
    ``nesterov`` it steps along g + μv instead (at μ = 0 that is plain SGD, so it is left off
    there: torch refuses Nesterov without momentum). Adam's and AdamW's epsilon defaults to
    Keras' 1e-7. ``weight_decay`` is L2 (added to the gradient) for SGD and Adam, decoupled
    for AdamW.
    """
    if config.name in ("adam", "adamw"):
        return torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam, {
            "lr": config.lr,
            "betas": (config.beta1, config.beta2),
            "eps": config.eps,
            "weight_decay": config.weight_decay,
        }
    momentum = config.momentum if config.name == "momentum" else 0.0
    return torch.optim.SGD, {
        "lr": config.lr,
        "momentum": momentum,
        "nesterov": config.nesterov and momentum > 0,
        "weight_decay": config.weight_decay,
    }


#: Modules whose parameters ``decay_exclude: [norm]`` exempts from weight decay.
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
    nn.GroupNorm,
    nn.LayerNorm,
    nn.RMSNorm,
)


def parameter_groups(
    model: nn.Module, config: OptimizerConfig
) -> list[dict[str, Any]] | list[nn.Parameter]:
    """The model's parameters as the optimizer takes them.

    Without weight decay, or with nothing excluded from it, every parameter in model order
    (one group). Otherwise two groups: the decayed parameters, then those ``decay_exclude``
    names with ``weight_decay`` 0: ``bias`` is any parameter a module registers as ``bias``,
    ``norm`` every parameter of a :data:`NORM_LAYERS` module. Each keeps model order.
    """
    params = list(model.parameters())
    if config.weight_decay == 0 or not config.decay_exclude:
        return params
    exempt: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            is_norm = "norm" in config.decay_exclude and isinstance(module, NORM_LAYERS)
            if is_norm or ("bias" in config.decay_exclude and name == "bias"):
                exempt.add(id(param))
    groups: list[dict[str, Any]] = [
        {"params": [p for p in params if id(p) not in exempt]},
        {"params": [p for p in params if id(p) in exempt], "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def clip_before_step(optimizer: torch.optim.Optimizer, max_norm: float) -> None:
    """Clip the global L2 norm of ``optimizer``'s gradients to ``max_norm`` at the start of
    every ``optimizer.step()`` (a step pre-hook), so it acts on exactly the gradient the step
    applies, in the trainer and in any loop of one's own."""

    def clip(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        params = [p for group in opt.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, max_norm)

    optimizer.register_step_pre_hook(clip)


def build_optimizer(
    config: OptimizerConfig,
    model: nn.Module,
    *,
    total_steps: int | None = None,
    seed: int = 0,
    distributed: bool = False,
) -> torch.optim.Optimizer:
    """The optimizer ``config`` describes for ``model``'s parameters.

    Weight decay spares the parameters ``decay_exclude`` names (:func:`parameter_groups`); the
    groups pass through a perturbation wrapper to its base optimizer, which it shares them
    with. ``clip_grad_norm`` clips at the start of the *base* optimizer's step: after a
    wrapper has restored the weights and formed the update gradient (m-RWP's mix), and after
    the gradient techniques a loop applies before ``step()``.

    Args:
        config: the optimizer section of a run configuration.
        model: the network whose parameters the optimizer trains.
        total_steps: updates planned for the run (the cosine σ schedule needs it).
        seed: seed of the perturbation's random stream.
        distributed: this process is one rank of a torchrun job running parallel m-RWP
            (:class:`~dicelab.optim.distributed.DistributedMRWP`); only ``mrwp`` and
            ``marwp`` parallelise.
    """
    if distributed and config.perturbation not in ("mrwp", "marwp"):
        raise ConfigError(
            "optimizer.perturbation",
            config.perturbation,
            "a torchrun job with several processes runs parallel m-RWP: use mrwp or marwp "
            "(or launch one process)",
        )
    optimizer = _build(config, parameter_groups(model, config), total_steps, seed, distributed)
    if config.clip_grad_norm is not None:
        stepper = (
            optimizer.base_optimizer if isinstance(optimizer, PerturbedOptimizer) else optimizer
        )
        clip_before_step(stepper, config.clip_grad_norm)
    return optimizer


def _build(
    config: OptimizerConfig,
    params: list[dict[str, Any]] | list[nn.Parameter],
    total_steps: int | None,
    seed: int,
    distributed: bool,
) -> torch.optim.Optimizer:
    """The base optimizer over ``params``, wrapped by the configured perturbation if any."""
    base, kwargs = base_optimizer(config)
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
