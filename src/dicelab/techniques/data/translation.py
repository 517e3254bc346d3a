"""Random translation: shift each image by a random number of pixels along each axis.

Keras ``RandomTranslation(height_factor=factor, width_factor=factor)`` semantics, one shift
per image and axis, as a fraction of the image size:

    dy_i ~ U[−factor·H, factor·H],   dx_i ~ U[−factor·W, factor·W]   (pixels, not rounded)
    x_i ← x_i moved dx_i pixels right and dy_i pixels down

Shifts are real numbers: bilinear interpolation, and the Keras default
``fill_mode="reflect"`` fills the strip uncovered by the shift. Stage: DATA, after flip,
rotation and zoom, before contrast (the authors' pipeline); one resampling per batch.
Training only; images ``(B, C, H, W)`` only.

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
from dicelab.techniques._augment import AffineAugmentation, symmetric_uniform
from dicelab.techniques._base import register_technique


def translation_matrix(shifts: torch.Tensor) -> torch.Tensor:
    """Output → input maps ``(B, 2, 3)`` moving the content by ``shifts`` ``(B, 2)`` =
    ``(dy, dx)`` pixels (down, right): the output pixel ``(u, v)`` reads ``(u − dx, v − dy)``.

    Example:
        >>> translation_matrix(torch.tensor([[2.0, -3.0]]))
        tensor([[[ 1.,  0.,  3.],
                 [ 0.,  1., -2.]]])
    """
    dy, dx = shifts.unbind(dim=-1)
    one, zero = torch.ones_like(dy), torch.zeros_like(dy)
    rows = (torch.stack([one, zero, -dx], dim=-1), torch.stack([zero, one, -dy], dim=-1))
    return torch.stack(rows, dim=-2)


@register_technique
@dataclass(repr=False)
class Translation(AffineAugmentation):
    """Shift each image by up to ``factor`` of its height and width.

    Args:
        factor: the largest shift as a fraction of the image size; ``0.0`` (default) is off.

    Example:
        >>> from dicelab.stages import Context
        >>> x = torch.rand(2, 1, 8, 8)
        >>> out, _ = Translation(factor=0.1).on_batch(x, torch.zeros(2), Context())
        >>> out.shape
        torch.Size([2, 1, 8, 8])
    """

    name: ClassVar[str] = "translation"
    category: ClassVar[Category] = Category.DATA
    strength: ClassVar[str] = "factor"
    priority: ClassVar[int] = 40

    factor: float = hp(
        0.0, valid=(0.0, 1.0), search=(0.0, 0.2), doc="largest shift, fraction of H and W"
    )

    def draw_shifts(
        self, batch: int, height: int, width: int, device: torch.device
    ) -> torch.Tensor:
        """The next ``batch`` shifts ``(B, 2)`` = ``(dy, dx)`` in pixels (float32)."""
        fractions = symmetric_uniform((batch, 2), self.factor, self.rng(device), device)
        size = torch.tensor([float(height), float(width)], device=device)
        return fractions * size

    def affine(self, batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        return translation_matrix(self.draw_shifts(batch, height, width, device))
