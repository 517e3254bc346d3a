"""Gradient noise: annealed Gaussian noise added to every gradient (Neelakantan et al., 2015).

At every training step each gradient entry of every trainable tensor that has a gradient
(kernels, biases, BatchNorm scales and shifts) receives independent Gaussian noise whose
variance decays with the number of updates done so far, ``t = ctx.step`` (from 0):

    g ← g + N(0, σ_t²),   σ_t = sqrt(eta / (1 + t)^gamma),   gamma = 0.55

``eta`` is a **variance** (σ_0² = eta), not a standard deviation, as in the original paper and
the authors' code. Stage: GRAD, after ``backward()`` and after gradient dropout (priority 10)
and the frozen-weights mask (priority 20), before weight noise and the optimizer step, as in the
authors' ``train_step``: entries zeroed by those masks still receive noise. Training only.

The authors search ``eta`` continuously in [0, 1] and keep ``gamma`` fixed at 0.55; so does
the search space here (``gamma`` is not tuned).

References:
    Neelakantan et al., "Adding Gradient Noise Improves Learning for Very Deep Networks",
    arXiv:1511.06807 (2015).
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
from dicelab.techniques._anneal import annealed_std
from dicelab.techniques._base import BaseTechnique, register_technique


@register_technique
@dataclass(repr=False)
class GradientNoise(BaseTechnique):
    """Add ``N(0, eta / (1 + t)^gamma)`` noise to every gradient entry at update ``t``.

    Args:
        eta: noise variance at the first update (σ_0² = eta); ``0.0`` (default) is off.
        gamma: annealing exponent of the variance; fixed at the authors' 0.55, not searched.

    Example:
        >>> param = nn.Parameter(torch.zeros(3))
        >>> param.grad = torch.zeros(3)
        >>> GradientNoise(eta=0.3).on_grads([param], Context(step=0))
        >>> bool((param.grad != 0).all())
        True
    """

    name: ClassVar[str] = "gradient_noise"
    category: ClassVar[Category] = Category.OPTIMIZATION
    strength: ClassVar[str] = "eta"
    priority: ClassVar[int] = 30

    eta: float = hp(0.0, valid=(0.0, None), search=(0.0, 1.0), doc="noise variance at t = 0")
    gamma: float = hp(0.55, valid=(0.0, None), doc="annealing exponent (fixed)")

    def on_grads(self, params: Sequence[nn.Parameter], ctx: Context) -> None:
        """GRAD: after ``backward()`` and the gradient masks, before the optimizer step."""
        if self.is_noop or not ctx.training:
            return
        std = annealed_std(self.eta, self.gamma, ctx.step)
        for param in params:
            grad = param.grad
            if grad is None:
                continue
            noise = torch.randn(
                grad.shape, generator=self.rng(grad.device), device=grad.device, dtype=grad.dtype
            )
            grad.add_(noise, alpha=std)
