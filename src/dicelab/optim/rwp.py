"""RWP and ARWP: random weight perturbation (Li et al., arXiv 2404.00357), one pass per update.

RWP minimises the expected loss under a filter-wise Gaussian perturbation: each update draws a
fresh ε and applies the gradient taken at ``w + ε`` at ``w``:

    ε_j ~ N(0, (σ·‖w_j‖₂)²) for each filter j (one slice along dim 0: an output channel of a
    convolution, an output neuron of a linear layer),
    w ← w − η · ∇L(w + ε)   (through the base optimizer)

A 1-D parameter (bias, BatchNorm γ/β) is one "filter": every element gets
``N(0, (σ·(‖w‖₂ + 1e-16))²)`` with the norm of the whole vector, as the authors' code does
(per element this is large, about σ·√C for a BatchNorm γ near 1).

ARWP (``eta > 0``) shrinks the noise where the loss is sensitive. It keeps, per parameter
entry, an exponentially weighted *sum* of squared perturbed gradients ``F ← β·F + g²`` (no
``1 − β`` factor; ``g`` before weight decay), sums it over each filter, and divides the noise
sample by ``sqrt(1 + η·F_j)``, so the variance shrinks by ``1 + η·F_j``. This is the authors'
code; the paper's equation, as transcribed, divides the covariance by ``sqrt(1 + η·F)``
instead, a square root apart (unresolved; dicelab follows the code). The first update has no
history and is plain RWP.

The σ schedule ``"cosine"`` is the authors' CosineInc: ``σ(t) = σ₀·(1 + inc·(1 − cos(π t/T))/2)``
for update ``t`` of ``T``, rising from σ₀ to σ₀·(1 + inc); ``"constant"`` keeps σ₀.

Cost: one forward/backward per update, plus the noise draw (one Gaussian value per weight).
BatchNorm running statistics are updated on the perturbed pass, as in the authors' ARWP
script (there is no clean pass to take them from).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.optim._base import PerturbedOptimizer, check_range

SIGMA_SCHEDULES = ("constant", "cosine")


class RWP(PerturbedOptimizer):
    """Filter-wise random weight perturbation around any ``torch.optim`` optimizer.

    Args:
        params: parameters or parameter groups.
        base_optimizer: the optimizer class that steps at ``w``.
        sigma: relative noise scale σ₀ (``>= 0``; ``0`` is the base optimizer exactly).
        sigma_schedule: ``"constant"`` or ``"cosine"`` (σ₀ → σ₀·(1 + ``sigma_inc``)).
        sigma_inc: the cosine schedule's relative increase (the authors use 10).
        total_steps: updates in the run, ``T`` of the cosine schedule (required by it).
        eta: ARWP's η (``0`` is RWP; the class ARWP defaults to 0.1).
        beta: ARWP's decay β of the squared-gradient sum, in ``[0, 1)``.
        seed: seed of the noise stream.
        **kwargs: the base optimizer's arguments.

    Example:
        >>> model = nn.Linear(3, 2)
        >>> opt = RWP(model.parameters(), torch.optim.SGD, sigma=0.01, lr=0.1, seed=0)
        >>> opt.perturb()  # w + ε, drawn from the optimizer's own stream
        >>> model(torch.ones(4, 3)).sum().backward()
        >>> opt.restore()  # back to w; the gradient taken at w + ε stays in p.grad
        True
        >>> opt.step()
    """

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
        *,
        sigma: float = 0.01,
        sigma_schedule: str = "constant",
        sigma_inc: float = 10.0,
        total_steps: int | None = None,
        eta: float = 0.0,
        beta: float = 0.99,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        self.sigma = check_range("sigma", sigma, 0.0)
        if sigma_schedule not in SIGMA_SCHEDULES:
            raise ConfigError(
                "sigma_schedule", sigma_schedule, f"must be one of {', '.join(SIGMA_SCHEDULES)}"
            )
        self.sigma_schedule = sigma_schedule
        self.sigma_inc = check_range("sigma_inc", sigma_inc, 0.0)
        if sigma_schedule == "cosine" and (total_steps is None or total_steps < 1):
            raise ConfigError(
                "total_steps",
                total_steps,
                "the cosine sigma schedule needs the number of updates in the run (>= 1)",
            )
        self.total_steps = total_steps
        self.eta = check_range("eta", eta, 0.0)
        self.beta = check_range("beta", beta, 0.0, 1.0, open_high=True)
        super().__init__(params, base_optimizer, seed=seed, **kwargs)
        self._fisher: list[torch.Tensor | None] = []

    def current_sigma(self) -> float:
        """σ for the next update under the schedule."""
        if self.sigma_schedule == "constant":
            return self.sigma
        assert self.total_steps is not None
        t = min(self.updates, self.total_steps)
        rise = (1 - math.cos(math.pi * t / self.total_steps)) / 2
        return self.sigma * (1 + self.sigma_inc * rise)

    def _perturb(self, params: list[nn.Parameter]) -> None:
        sigma = self.current_sigma()
        fisher = self._fisher if self.eta > 0 and self._fisher else [None] * len(params)
        for p, f in zip(params, fisher, strict=True):
            noise = torch.randn(
                p.shape, generator=self.generator(p.device), device=p.device, dtype=p.dtype
            )
            if p.dim() > 1:  # one scale per filter (slice along dim 0)
                scale = torch.linalg.vector_norm(p.flatten(1), dim=1)
                if f is not None:
                    scale = scale / torch.sqrt(1 + self.eta * f.flatten(1).sum(1))
                scale = scale.view(-1, *([1] * (p.dim() - 1)))
            else:  # the whole vector's norm for every element
                scale = torch.linalg.vector_norm(p) + 1e-16
                if f is not None:
                    scale = scale / torch.sqrt(1 + self.eta * f)
            p.add_(noise.mul_(scale), alpha=sigma)

    def _finish_perturbed(self, params: list[nn.Parameter]) -> None:
        if self.eta == 0:
            return
        if not self._fisher:
            self._fisher = [torch.zeros_like(p) for p in params]
        for p, f in zip(params, self._fisher, strict=True):
            if p.grad is not None and f is not None:
                f.mul_(self.beta).addcmul_(p.grad, p.grad)

    def _extra_state(self) -> dict[str, Any]:
        return {"fisher": list(self._fisher)}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._fisher = list(state.get("fisher", []))

    def _describe(self) -> str:
        text = f"sigma={self.sigma}, sigma_schedule={self.sigma_schedule!r}"
        return text + (f", eta={self.eta}, beta={self.beta}" if self.eta > 0 else "")


class ARWP(RWP):
    """Adaptive RWP: :class:`RWP` with the noise shrunk by the squared-gradient history
    (``eta=0.1``, ``beta=0.99`` by default, the authors' values)."""

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
        *,
        eta: float = 0.1,
        beta: float = 0.99,
        **kwargs: Any,
    ) -> None:
        super().__init__(params, base_optimizer, eta=eta, beta=beta, **kwargs)
