"""Random flip: mirror each image left-right and/or up-down with probability 1/2.

Keras ``RandomFlip(mode)`` semantics, per image of the batch and independently per axis:

    h_i ~ Bernoulli(1/2) (horizontal modes),   x_i ← flip_left_right(x_i) if h_i
    v_i ~ Bernoulli(1/2) (vertical modes),     x_i ← flip_up_down(x_i)    if v_i

so ``"horizontal_and_vertical"`` leaves an image unchanged, mirrored on one axis or rotated by
180° with probability 1/4 each. A flip moves pixels exactly (no interpolation). Stage: DATA,
the first augmentation of the authors' pipeline (before rotation, zoom, translation and
contrast). Training only; images ``(B, C, H, W)`` only.

The authors decode their flip gene with ``ceil``: {0, 1} no flip, 2 both axes,
3 horizontal, 4 vertical; here the mode is named directly.

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
from dicelab.techniques._augment import ImageAugmentation
from dicelab.techniques._base import register_technique

# tensor dims mirrored by each mode: -1 is the width (left-right), -2 the height (up-down)
_DIMS = {"horizontal_and_vertical": (-1, -2), "horizontal": (-1,), "vertical": (-2,)}


@register_technique
@dataclass(repr=False)
class Flip(ImageAugmentation):
    """Mirror each image with probability 1/2 along the axes of ``mode``.

    Args:
        mode: ``"horizontal"`` (left-right), ``"vertical"`` (up-down),
            ``"horizontal_and_vertical"`` (each axis independently), or ``"none"`` (default,
            off).

    Example:
        >>> x = torch.rand(4, 1, 3, 3)
        >>> out = Flip(mode="horizontal").augment(x)
        >>> all(torch.equal(o, i) or torch.equal(o, i.flip(-1)) for o, i in zip(out, x))
        True
    """

    name: ClassVar[str] = "flip"
    category: ClassVar[Category] = Category.DATA
    strength: ClassVar[str] = "mode"
    priority: ClassVar[int] = 10

    mode: str = hp(
        "none",
        choices=("none", "horizontal_and_vertical", "horizontal", "vertical"),
        doc="axes that may be mirrored",
    )

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        dims = _DIMS[self.mode]
        draw = torch.rand(
            (x.shape[0], len(dims)),
            generator=self.rng(x.device),
            device=x.device,
            dtype=torch.float32,
        )
        flipped = draw < 0.5
        for axis, dim in enumerate(dims):  # at most two axes; the batch is never looped over
            x = torch.where(flipped[:, axis].view(-1, 1, 1, 1), x.flip(dim), x)
        return x
