"""Random rotation: rotate each image about its centre by a random angle.

Keras ``RandomRotation(factor)`` semantics, one angle per image:

    θ_i ~ U[−factor·2π, factor·2π],   x_i ← rotate(x_i, θ_i)    (θ > 0: counter-clockwise)

so ``factor = 0.2`` allows up to ±72°. The rotation is about the image centre, with bilinear
interpolation and the Keras default ``fill_mode="reflect"`` for the corners that come from
outside the image. Stage: DATA, after flip and before zoom, translation and contrast (the
authors' pipeline); each geometric augmentation resamples the batch once. Training only;
images ``(B, C, H, W)`` only.

References:
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from dicelab.space import hp
from dicelab.stages import Category
from dicelab.techniques._augment import AffineAugmentation, symmetric_uniform
from dicelab.techniques._base import register_technique


def rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Output → input maps ``(B, 2, 3)`` that rotate images counter-clockwise by ``angles``.

    In the centred pixel coordinates of :mod:`dicelab.techniques._augment` (``y`` down), the
    output pixel ``(u, v)`` reads the input at ``(u cos θ − v sin θ, u sin θ + v cos θ)``.

    Args:
        angles: ``(B,)`` angles in radians.

    Example:
        >>> quarter = rotation_matrix(torch.tensor([math.pi / 2]))
        >>> torch.allclose(quarter, torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]]), atol=1e-6)
        True
    """
    cos, sin, zero = angles.cos(), angles.sin(), torch.zeros_like(angles)
    rows = (torch.stack([cos, -sin, zero], dim=-1), torch.stack([sin, cos, zero], dim=-1))
    return torch.stack(rows, dim=-2)


@register_technique
@dataclass(repr=False)
class Rotation(AffineAugmentation):
    """Rotate each image by its own angle drawn from U[−factor·2π, factor·2π].

    Args:
        factor: the largest rotation as a fraction of a full turn; ``0.0`` (default) is off.

    Example:
        >>> from dicelab.stages import Context
        >>> x = torch.rand(2, 1, 8, 8)
        >>> out, _ = Rotation(factor=0.1).on_batch(x, torch.zeros(2), Context())
        >>> out.shape
        torch.Size([2, 1, 8, 8])
    """

    name: ClassVar[str] = "rotation"
    category: ClassVar[Category] = Category.DATA
    strength: ClassVar[str] = "factor"
    priority: ClassVar[int] = 20

    factor: float = hp(
        0.0, valid=(0.0, 1.0), search=(0.0, 0.2), doc="largest angle, fraction of 2π"
    )

    def draw_angles(self, batch: int, device: torch.device) -> torch.Tensor:
        """The next ``batch`` angles (radians, float32) from this technique's stream."""
        return symmetric_uniform((batch,), self.factor * 2.0 * math.pi, self.rng(device), device)

    def affine(self, batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        return rotation_matrix(self.draw_angles(batch, device))
