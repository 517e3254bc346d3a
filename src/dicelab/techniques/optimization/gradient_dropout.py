"""Gradient dropout: random masking of gradient updates (new in the paper).

At every training step each gradient entry of every trainable tensor (kernels, biases,
BatchNorm scales and shifts) is zeroed independently with probability ``p``:

    m ~ Bernoulli(1 − p) element-wise,   g ← g ⊙ m          (no 1/(1 − p) rescaling)

so the expected update shrinks by (1 − p). Stage: GRAD, after ``backward()`` and before the
frozen-weights mask, gradient noise, weight noise and the optimizer step, as in the authors'
``train_step``; with Adam or momentum the moment estimates see the zeros. Training only.

References:
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from dicelab.space import hp
from dicelab.stages import Category, Context
from dicelab.techniques._base import BaseTechnique, register_technique


@register_technique
@dataclass(repr=False)
class GradientDropout(BaseTechnique):
    """Zero each gradient entry with probability ``p`` (no rescaling).

    Args:
        p: probability that a gradient entry is masked at a step; ``0.0`` (default) is off.

    Example:
        >>> GradientDropout(p=0.2).is_noop, GradientDropout().is_noop
        (False, True)
    """

    name: ClassVar[str] = "gradient_dropout"
    category: ClassVar[Category] = Category.OPTIMIZATION
    strength: ClassVar[str] = "p"
    priority: ClassVar[int] = 10

    p: float = hp(0.0, valid=(0.0, 1.0), search=(0.0, 0.5), doc="masking probability")

    def on_grads(self, params: Sequence[nn.Parameter], ctx: Context) -> None:
        if self.is_noop or not ctx.training:
            return
        for param in params:
            grad = param.grad
            if grad is None:
                continue
            draw = torch.rand(grad.shape, generator=self.rng(grad.device), device=grad.device)
            grad.masked_fill_(draw < self.p, 0.0)
