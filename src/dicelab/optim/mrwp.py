"""m-RWP and m-ARWP: the mixed objective λ·E[L(w + ε)] + (1 − λ)·L(w) (arXiv 2404.00357).

Each update combines a gradient at the perturbed weights with one at the clean weights:

    g = λ · ∇L(w + ε) + (1 − λ) · ∇L(w),    w ← w − η · g   (through the base optimizer)

with ε the filter-wise Gaussian of :class:`~dicelab.optim.RWP` (m-ARWP: the adaptive one, its
squared-gradient history taken from the perturbed gradients only).

``batches="consecutive"`` (default) is the authors' code: the two gradients come from two
consecutive mini-batches, the clean one first, so one update spends two batches (and two
forward/backward passes, like SAM); the authors double the epochs to keep the number of
updates. In a loop every batch is one ``perturb / backward / step`` round: the first round
keeps the clean gradient and does not step, the second perturbs, mixes and steps. BatchNorm
running statistics should be frozen on the perturbed pass (:attr:`takes_clean_pass`; the
dicelab trainer does it). ``batches="same"`` takes both gradients on one batch, SAM-style
(a backward pass at ``w`` before :meth:`perturb`); it is a labelled deviation from the
authors' code.

The two gradients do not depend on each other, so m-RWP parallelises: over two workers the
update costs one pass of wall time (:mod:`dicelab.optim.distributed`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.optim._base import check_range
from dicelab.optim.rwp import RWP

MIX_BATCHES = ("consecutive", "same")


class MRWP(RWP):
    """Mixed random weight perturbation (m-RWP; m-ARWP with ``eta > 0``).

    Args:
        params: parameters or parameter groups.
        base_optimizer: the optimizer class that steps at ``w``.
        lam: λ, the weight of the perturbed gradient, in ``[0, 1]`` (``0`` is the base
            optimizer on the clean batches).
        batches: ``"consecutive"`` (the authors' code) or ``"same"``.
        sigma: relative noise scale σ₀ (the authors use 0.015 for the mixed methods).
        **kwargs: :class:`~dicelab.optim.RWP`'s options and the base optimizer's arguments.

    Example:
        >>> model = nn.Linear(3, 2)
        >>> opt = MRWP(model.parameters(), torch.optim.SGD, lam=0.5, lr=0.1)
        >>> for batch in torch.ones(4, 2, 3):  # four batches, two updates
        ...     opt.perturb()  # at w on the clean batch, at w + ε on the next one
        ...     model(batch).sum().backward()
        ...     _ = opt.step()  # steps on every second batch
        >>> opt.updates
        2
    """

    takes_clean_pass: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
        *,
        lam: float = 0.5,
        batches: str = "consecutive",
        sigma: float = 0.015,
        **kwargs: Any,
    ) -> None:
        self.lam = check_range("lam", lam, 0.0, 1.0)
        if batches not in MIX_BATCHES:
            raise ConfigError("batches", batches, f"must be one of {', '.join(MIX_BATCHES)}")
        self.batches = batches
        super().__init__(params, base_optimizer, sigma=sigma, **kwargs)
        self._clean: list[torch.Tensor | None] = []

    @property
    def needs_gradient_to_perturb(self) -> bool:
        return self.batches == "same"

    @property
    def mixes_consecutive_batches(self) -> bool:
        return self.batches == "consecutive"

    def _stash(self, params: list[nn.Parameter]) -> None:
        # Keep the gradient tensors themselves and detach them from the parameters, so a later
        # zero_grad() (even set_to_none=False) cannot touch them.
        self._clean = [p.grad for p in params]
        for p in params:
            p.grad = None

    def _perturb(self, params: list[nn.Parameter]) -> None:
        if self.batches == "same":
            self._stash(params)
        super()._perturb(params)

    def _finish(self, params: list[nn.Parameter]) -> None:
        for p, clean in zip(params, self._clean, strict=True):
            if p.grad is None and clean is None:
                continue
            perturbed = p.grad if p.grad is not None else torch.zeros_like(p)
            if clean is None:
                clean = torch.zeros_like(p)
            # clean + λ·(perturbed − clean): exactly the clean gradient at λ = 0.
            p.grad = torch.lerp(clean, perturbed, self.lam)
        self._clean = []

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "clean": list(self._clean)}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        super()._load_extra_state(state)
        self._clean = list(state.get("clean", []))

    def _describe(self) -> str:
        return f"lam={self.lam}, batches={self.batches!r}, {super()._describe()}"


class MARWP(MRWP):
    """m-ARWP: :class:`MRWP` with ARWP's adaptive noise (``eta=0.1``, ``beta=0.99``)."""

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
