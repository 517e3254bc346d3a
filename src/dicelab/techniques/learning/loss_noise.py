"""Loss noise: each example's loss is multiplied by its own random factor (new in the paper).

At every training step the per-example loss (cross-entropy, with label smoothing if that is
on) is multiplied by an independent Gaussian factor, one per example, redrawn every step:

    L_i ← L_i · ε_i,   ε_i ~ N(1, std²)

so the gradient of the batch loss is the per-example gradients weighted by ε_i. With ``std``
near 1 some ε_i are negative (about 16 % at std = 1), which turns the update on those examples
into gradient *ascent*. Stage: LOSS, on the per-example loss ``(B,)`` before the reduction.
Training only: evaluation losses are clean (the authors' compiled loss also made their reported
evaluation *losses* noisy, though not their accuracies; that is not reproduced).

Category: LEARNING, as the dicelab catalog lists it; the paper's own category for loss noise is
not verified (the authors' code groups it with "network noise", i.e. the model stage).

References:
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from dicelab.space import hp
from dicelab.stages import Category, Context
from dicelab.techniques._base import BaseTechnique, register_technique


@register_technique
@dataclass(repr=False)
class LossNoise(BaseTechnique):
    """Multiply each example's loss by an independent ``N(1, std²)`` factor.

    Args:
        std: standard deviation of the multiplicative factor; ``0.0`` (default) is off.

    Example:
        >>> loss = torch.ones(4)
        >>> noisy = LossNoise(std=0.5).on_loss(loss, Context())
        >>> noisy.shape, torch.equal(noisy, loss)
        (torch.Size([4]), False)
    """

    name: ClassVar[str] = "loss_noise"
    category: ClassVar[Category] = Category.LEARNING
    strength: ClassVar[str] = "std"

    std: float = hp(0.0, valid=(0.0, None), search=(0.0, 1.0), doc="std of the loss factor")

    def on_loss(self, per_example: torch.Tensor, ctx: Context) -> torch.Tensor:
        """LOSS: every training step, on the per-example loss ``(B,)`` before the reduction."""
        if self.is_noop or not ctx.training:
            return per_example
        factor = torch.randn(
            per_example.shape,
            generator=self.rng(per_example.device),
            device=per_example.device,
            dtype=per_example.dtype,
        )
        return per_example * factor.mul_(self.std).add_(1.0)
