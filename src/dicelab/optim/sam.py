"""SAM and ASAM: the adversarial weight perturbation the RWP paper compares against.

Sharpness-aware minimization (Foret et al. 2021) takes the gradient at the worst point of a
ρ-ball around ``w`` (to first order) and applies it at ``w``:

    g = ∇L(w),   ε = ρ · g / ‖g‖₂,   w ← w − η · ∇L(w + ε)   (through the base optimizer)

ASAM (Kwon et al. 2021, ``adaptive=True``) scales the ball by the weights' magnitudes:
``ε = ρ · w² ⊙ g / ‖ |w| ⊙ g ‖₂``, applied to every parameter, biases included (as the popular
PyTorch implementation does; its authors use ρ = 2.0 with it, 0.05 for SAM). ``‖·‖₂`` is the
norm over all trainable parameters together.

Cost: two forward/backward passes per update, one after the other (the second needs the
first's gradient), so SAM cannot spread them over two workers the way m-RWP does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from dicelab.optim._base import PerturbedOptimizer, check_range


class SAM(PerturbedOptimizer):
    """Sharpness-aware minimization around any ``torch.optim`` optimizer.

    Args:
        params: parameters or parameter groups.
        base_optimizer: the optimizer class that steps at ``w``.
        rho: radius of the ascent step (``>= 0``; ``0`` is the base optimizer exactly).
        adaptive: ASAM's element-wise scaling by ``|w|``.
        seed: unused by SAM (it draws nothing); accepted for a uniform signature.
        **kwargs: the base optimizer's arguments.

    Example:
        >>> model = nn.Linear(3, 1)
        >>> opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
        >>> x, y = torch.ones(4, 3), torch.zeros(4, 1)
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = ((model(x) - y) ** 2).mean()
        ...     loss.backward()
        ...     return loss
        >>> loss = opt.step(closure)  # two passes: at w, then at w + ε
        >>> opt.updates
        1
    """

    takes_clean_pass: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
        *,
        rho: float = 0.05,
        adaptive: bool = False,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        self.rho = check_range("rho", rho, 0.0)
        self.adaptive = bool(adaptive)
        super().__init__(params, base_optimizer, seed=seed, **kwargs)

    @property
    def needs_gradient_to_perturb(self) -> bool:
        return True

    def _perturb(self, params: list[nn.Parameter]) -> None:
        with_grad = [p for p in params if p.grad is not None]
        if self.adaptive:
            scaled = [p.abs() * p.grad for p in with_grad]  # type: ignore[operator]
        else:
            scaled = [p.grad for p in with_grad]  # type: ignore[misc]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in scaled]))
        scale = self.rho / (norm + 1e-12)
        for p, g in zip(with_grad, scaled, strict=True):
            # SAM: ρ·g/‖g‖; ASAM: ρ·w²g/‖|w|g‖ = ρ·|w|·(|w|g)/‖|w|g‖
            step = g * scale
            if self.adaptive:
                step = step * p.abs()
            p.add_(step)

    def _describe(self) -> str:
        return f"rho={self.rho}, adaptive={self.adaptive}"
