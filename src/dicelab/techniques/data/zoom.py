"""Random zoom: scale each image about its centre by random vertical and horizontal amounts.

Keras ``RandomZoom(height_factor=factor, width_factor=factor)`` semantics, two independent
amounts per image:

    z_h,i ~ U[−factor, factor],   z_w,i ~ U[−factor, factor]
    output pixel (u, v) reads the input at ((1 + z_w,i)·u, (1 + z_h,i)·v)   (about the centre)

Keras' sign convention: a **positive** amount zooms **out** (the content shrinks, the border
is filled by reflection), a negative one zooms in; the output size never changes. Bilinear
interpolation, ``fill_mode="reflect"``. Stage: DATA, after flip and rotation, before
translation and contrast (the authors' pipeline); one resampling per batch. Training only;
images ``(B, C, H, W)`` only.

``factor`` must stay below 1 (Keras accepts 1): at 1 a scale ``1 + z`` could reach 0 and map
the whole image onto its centre pixel.

References:
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from dicelab.exceptions import ConfigError
from dicelab.space import hp
from dicelab.stages import Category
from dicelab.techniques._augment import AffineAugmentation, symmetric_uniform
from dicelab.techniques._base import register_technique


def zoom_matrix(amounts: torch.Tensor) -> torch.Tensor:
    """Output → input maps ``(B, 2, 3)`` for zoom amounts ``(B, 2)`` ordered ``(z_h, z_w)``.

    Example:
        >>> zoom_matrix(torch.tensor([[0.5, -0.25]]))
        tensor([[[0.7500, 0.0000, 0.0000],
                 [0.0000, 1.5000, 0.0000]]])
    """
    scale_h, scale_w = (1.0 + amounts).unbind(dim=-1)
    zero = torch.zeros_like(scale_h)
    rows = (torch.stack([scale_w, zero, zero], dim=-1), torch.stack([zero, scale_h, zero], dim=-1))
    return torch.stack(rows, dim=-2)


@register_technique
@dataclass(repr=False)
class Zoom(AffineAugmentation):
    """Zoom each image in or out, by independent amounts along its height and width.

    Args:
        factor: the largest zoom amount, a fraction of the image size, in [0, 1); positive
            draws zoom out. ``0.0`` (default) is off.

    Example:
        >>> from dicelab.stages import Context
        >>> x = torch.rand(2, 1, 8, 8)
        >>> out, _ = Zoom(factor=0.1).on_batch(x, torch.zeros(2), Context())
        >>> out.shape
        torch.Size([2, 1, 8, 8])
    """

    name: ClassVar[str] = "zoom"
    category: ClassVar[Category] = Category.DATA
    strength: ClassVar[str] = "factor"
    priority: ClassVar[int] = 30

    factor: float = hp(
        0.0, valid=(0.0, 1.0), search=(0.0, 0.2), doc="largest zoom amount, below 1"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.factor >= 1.0:
            raise ConfigError(
                f"techniques.{self.name}.factor",
                self.factor,
                "must lie in [0, 1): at 1 an image could be scaled to a single pixel",
            )

    def draw_amounts(self, batch: int, device: torch.device) -> torch.Tensor:
        """The next ``batch`` zoom amounts ``(B, 2)`` = ``(z_h, z_w)`` (float32)."""
        return symmetric_uniform((batch, 2), self.factor, self.rng(device), device)

    def affine(self, batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        return zoom_matrix(self.draw_amounts(batch, device))
