"""Weight noise: annealed additive Gaussian noise on the weights before each update.

At every training step each entry of every trainable tensor (kernels, biases, BatchNorm scales
and shifts) is moved by independent Gaussian noise, with the same annealed scale as gradient
noise and ``t = ctx.step`` the updates done so far (from 0):

    w ← w + N(0, σ_t²),   σ_t = sqrt(eta / (1 + t)^gamma),   gamma = 0.55

``eta`` is a variance (σ_0² = eta). Stage: WEIGHT, after every GRAD hook and immediately before
the optimizer step, as in the authors' ``train_step``; the noise is never removed (the next
forward pass and the optimizer step both see the noisy weights), and the gradients are left
alone. Training only.

In the paper's 22-dimensional search space the gene x ∈ [1, 6] decodes to ``eta = 10^(−x)``,
with x ≥ 6 meaning off; that decoding belongs to the search-space code, not here. This class
takes ``eta`` itself, searched on a log scale over [1e-6, 1e-1] (the same range).

Deviation from the authors' code: none on the active path. The authors' older ``CustomAdam``
(not used by their ``fit()``) applied *multiplicative* noise, w ← w · N(1, ·); the additive
form here is the one their experiments ran.

References:
    An, "The effects of adding noise during backpropagation training on a generalization
    performance", Neural Computation 8(3) (1996) (the usual citation for weight noise; the
    paper's own reference for it is not verified).
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
class WeightNoise(BaseTechnique):
    """Add ``N(0, eta / (1 + t)^gamma)`` noise to every weight entry before update ``t``.

    Args:
        eta: noise variance at the first update (σ_0² = eta); ``0.0`` (default) is off.
        gamma: annealing exponent of the variance; fixed at the authors' 0.55, not searched.

    Example:
        >>> param = nn.Parameter(torch.zeros(3))
        >>> WeightNoise(eta=1e-2).on_weights([param], Context(step=0))
        >>> bool((param != 0).all())
        True
    """

    name: ClassVar[str] = "weight_noise"
    category: ClassVar[Category] = Category.OPTIMIZATION
    strength: ClassVar[str] = "eta"

    eta: float = hp(
        0.0, valid=(0.0, None), search=(1e-6, 1e-1), log=True, doc="noise variance at t = 0"
    )
    gamma: float = hp(0.55, valid=(0.0, None), doc="annealing exponent (fixed)")

    @torch.no_grad()
    def on_weights(self, params: Sequence[nn.Parameter], ctx: Context) -> None:
        """WEIGHT: after the GRAD hooks, immediately before the optimizer step."""
        if self.is_noop or not ctx.training:
            return
        std = annealed_std(self.eta, self.gamma, ctx.step)
        for param in params:
            noise = torch.randn(
                param.shape,
                generator=self.rng(param.device),
                device=param.device,
                dtype=param.dtype,
            )
            param.add_(noise, alpha=std)
