"""Input noise: additive Gaussian noise on every input value (Keras ``GaussianNoise``).

At every training step each entry of the input batch (pixels scaled to [0, 1], or the values
of a 1-D signal) receives independent Gaussian noise:

    x ← x + ε,   ε ~ N(0, std²) element-wise

The result is not clipped, as in Keras. Stage: DATA, after the augmentations (the authors put
a ``GaussianNoise`` layer first in the network, so it sees the augmented batch). Training
only. Works on inputs of any shape (images and the mnist1d signals).

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
class InputNoise(BaseTechnique):
    """Add ``N(0, std²)`` noise to every input value.

    Args:
        std: standard deviation of the noise, in input units (pixels in [0, 1]);
            ``0.0`` (default) is off.

    Example:
        >>> x = torch.zeros(2, 40)
        >>> out, _ = InputNoise(std=0.1).on_batch(x, torch.zeros(2), Context())
        >>> bool((out != 0).all())
        True
    """

    name: ClassVar[str] = "input_noise"
    category: ClassVar[Category] = Category.DATA
    strength: ClassVar[str] = "std"
    priority: ClassVar[int] = 60

    std: float = hp(0.0, valid=(0.0, None), search=(0.0, 1.0), doc="noise standard deviation")

    def on_batch(
        self, x: torch.Tensor, y: torch.Tensor, ctx: Context
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.is_noop or not ctx.training:
            return x, y
        noise = torch.randn(x.shape, generator=self.rng(x.device), device=x.device, dtype=x.dtype)
        return x + self.std * noise, y
