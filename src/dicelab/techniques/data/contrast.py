"""Random contrast: stretch or flatten each image around its per-channel mean.

Keras ``RandomContrast(factor)`` formula, one contrast factor per image:

    c_i ~ U[1 − factor, 1 + factor]
    m_i,k = mean of channel k of image i over its H × W pixels
    x_i,k ← clip((x_i,k − m_i,k)·c_i + m_i,k, 0, 1)

Stage: DATA, the last augmentation of the authors' pipeline (after flip, rotation, zoom and
translation), before input noise. Training only; images ``(B, C, H, W)`` only.

Deviations from the authors' code (Keras 2 in TensorFlow 2.x):

* Keras 2 draws **one factor per batch** (``tf.image.stateless_random_contrast``); here each
  image gets its own factor, as Keras 3 does and as every other augmentation here does.
* Keras 2 clips to [0, 255], which for the authors' pixels in [0, 1] only clips below 0;
  here the output is clipped to the [0, 1] pixel range (Keras 3's ``value_range=(0, 1)``).
* The authors replace ``factor = 0`` by 0.001 (a tiny always-on contrast jitter, because
  Keras rejects 0); here 0 is exactly off.

References:
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from dicelab.space import hp
from dicelab.stages import Category
from dicelab.techniques._augment import ImageAugmentation, symmetric_uniform
from dicelab.techniques._base import register_technique


@register_technique
@dataclass(repr=False)
class Contrast(ImageAugmentation):
    """Scale each image's deviation from its channel means by c ~ U[1 − factor, 1 + factor].

    Args:
        factor: the largest relative change of contrast; ``0.0`` (default) is off.

    Example:
        >>> x = torch.linspace(0.25, 0.75, 16).view(1, 1, 4, 4)
        >>> out = Contrast(factor=0.2).augment(x)
        >>> torch.allclose(out.mean(), x.mean()), torch.equal(out, x)
        (True, False)
    """

    name: ClassVar[str] = "contrast"
    category: ClassVar[Category] = Category.DATA
    strength: ClassVar[str] = "factor"
    priority: ClassVar[int] = 50

    factor: float = hp(
        0.0, valid=(0.0, 1.0), search=(0.0, 0.2), doc="largest relative contrast change"
    )

    def draw_factors(self, batch: int, device: torch.device) -> torch.Tensor:
        """The next ``batch`` contrast factors ``(B,)`` in [1 − factor, 1 + factor] (float32)."""
        return 1.0 + symmetric_uniform((batch,), self.factor, self.rng(device), device)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        factors = self.draw_factors(x.shape[0], x.device).to(x.dtype).view(-1, 1, 1, 1)
        mean = x.mean(dim=(-2, -1), keepdim=True)
        return ((x - mean) * factors + mean).clamp(0.0, 1.0)
