"""Cutout: zero a square patch of each image at a random centre (DeVries & Taylor 2017).

With probability ``p`` an image gets one hole of side ``s = size``, centred on a pixel drawn
uniformly from the whole image; the part of the square that falls outside the image is simply
lost (the hole is clipped at the border, so holes near an edge are smaller):

    u_i ~ U[0, 1),   (c_i, d_i) ~ U{0, …, H − 1} × U{0, …, W − 1}
    x_i[:, r, q] ← 0   for   c_i − ⌊s/2⌋ ≤ r < c_i − ⌊s/2⌋ + s,
                           d_i − ⌊s/2⌋ ≤ q < d_i − ⌊s/2⌋ + s,   when u_i < p

Stage: DATA, the last augmentation, after ``normalize`` as in the authors' pipelines (their
``Cutout`` follows ``Normalize``): with normalize on, a hole is 0 in normalised units, i.e. the
dataset's mean colour; without it, 0 on pixels in [0, 1] (black). Training only; images
``(B, C, H, W)`` only.

The batch's holes are one 0/1 mask ``(B, 1, H, W)``, the outer product of per-image row and
column indicators (no loop over images), and the batch is multiplied by it, as the original's
``img * mask``: hole values are exactly zero (−0 where the value was negative), every other
value is untouched, and the product keeps the batch's memory format. The mask is built in the
batch's dtype: on the CPU a multiply is several times faster than ``masked_fill`` or boolean
operations on a mask broadcast over the channels.

The RWP authors' ``Cutout`` class (the one in their CIFAR recipe; defaults size 16, p = 0.5) is
reproduced: its corner ``randint(−⌊s/2⌋, H − ⌊s/2⌋)`` puts the centre uniformly on the image,
its hole covers rows ``[max(0, corner), min(H, corner + s))``, and it acts with probability p.
``p`` defaults to their 0.5; DeVries & Taylor cut every image (``p = 1``). For an even side
(16) the hole is also the original code's ``[c − ⌊s/2⌋, c + ⌊s/2⌋)``; for an odd side that one
is a pixel narrower, while the authors' (and this) hole is ``s`` wide.

References:
    DeVries & Taylor, "Improved regularization of convolutional neural networks with Cutout",
    arXiv:1708.04552 (2017); their code: uoguelph-mlrg/Cutout ``util/cutout.py`` (centre
    ``np.random.randint(h)``, hole clipped with ``np.clip``), applied after ``normalize`` in
    ``train.py``.
    The RWP authors: nblt/mARWP ``utils.py`` (commit f12df73), lines 57–73 (class ``Cutout``)
    and 277 (``Cutout()`` after ``normalize`` in ``get_datasets_cutout``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from dicelab.space import hp
from dicelab.stages import Category
from dicelab.techniques._augment import ImageAugmentation
from dicelab.techniques._base import register_technique


@register_technique
@dataclass(repr=False)
class Cutout(ImageAugmentation):
    """Zero a ``size`` × ``size`` square (clipped at the border) of each image with probability
    ``p``.

    Args:
        size: side of the hole in pixels; ``0`` (default) is off, ``16`` the CIFAR-10 recipe.
        p: probability that an image gets a hole (the RWP authors' 0.5; the original: 1).

    Example:
        >>> x = torch.ones(2, 3, 32, 32)
        >>> out = Cutout(size=16, p=1.0).augment(x)
        >>> bool(((out == 0) | (out == 1)).all()), [bool((o == 0).any()) for o in out]
        (True, [True, True])
    """

    name: ClassVar[str] = "cutout"
    category: ClassVar[Category] = Category.DATA
    strength: ClassVar[str] = "size"
    priority: ClassVar[int] = 90

    size: int = hp(0, valid=(0, None), search=(0, 16), doc="side of the square hole, pixels")
    p: float = hp(0.5, valid=(0.0, 1.0), doc="probability that an image gets a hole")

    def draw_holes(
        self, batch: int, height: int, width: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``batch`` holes: their first row and column ``(B, 2)`` (int64; negative
        where the square starts above or left of the image) and whether each image gets its
        hole ``(B,)`` (bool). One draw of the centre pixel per image covers both axes."""
        gen = self.rng(device)
        centres = torch.randint(0, height * width, (batch,), generator=gen, device=device)
        applied = torch.rand((batch,), generator=gen, device=device) < self.p
        corners = torch.stack([centres // width, centres % width], dim=1) - self.size // 2
        return corners, applied

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        corners, applied = self.draw_holes(batch, height, width, x.device)
        # each pixel's row and column relative to its image's hole corner
        rows = torch.arange(height, device=x.device) - corners[:, :1]  # (B, H)
        cols = torch.arange(width, device=x.device) - corners[:, 1:]  # (B, W)
        in_rows = ((rows >= 0) & (rows < self.size) & applied.unsqueeze(1)).to(x.dtype)
        in_cols = ((cols >= 0) & (cols < self.size)).to(x.dtype)
        hole = in_rows.unsqueeze(2) * in_cols.unsqueeze(1)  # (B, H, W): 1 in the hole, else 0
        return x * (1 - hole).unsqueeze(1)
