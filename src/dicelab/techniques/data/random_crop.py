"""Random crop: pad each image by ``padding`` pixels, then cut it back to its size at a random
offset (torchvision ``RandomCrop(size, padding)``, the standard CIFAR augmentation).

One offset per image, uniform over the (2p + 1)² positions of the window in the padded image:

    x̃_i = x_i padded by p pixels on each side
    (a_i, b_i) ~ U{0, …, 2p} × U{0, …, 2p}
    x_i ← x̃_i[:, a_i : a_i + H, b_i : b_i + W]

so the content moves by whole pixels (no interpolation), by up to p along each axis, and
offset (p, p) leaves the image as it was. The strip the move uncovers is zeros
(``mode="zero"``, torchvision's default ``padding_mode="constant"`` with ``fill=0``: black on
pixels in [0, 1]) or the image mirrored about its border row (``mode="reflect"``,
``c b | a b c d | c b``, torchvision's ``padding_mode="reflect"``).

Stage: DATA, right after flip and before everything else that touches pixels, as in the RWP
authors' CIFAR pipeline (``RandomHorizontalFlip``, ``RandomCrop(32, 4)``, ``ToTensor``,
``Normalize``, ``Cutout``): the padding is black in pixel units, before normalisation. Flip and
crop commute in distribution (the offsets are symmetric), so their order only fixes which draw
goes with which image. Training only; images ``(B, C, H, W)`` only.

The batch is cropped in one gather from a sliding-window view of the padded batch (no loop over
images); the result keeps the input's memory format (``channels_last`` stays so).

References:
    The RWP authors' CIFAR augmentation: nblt/mARWP ``utils.py`` (commit f12df73), line 83
    (``get_datasets``) and line 274 (``get_datasets_cutout``): ``transforms.RandomCrop(32, 4)``
    after ``transforms.RandomHorizontalFlip()``.
    He et al., "Deep residual learning for image recognition", CVPR 2016, §4.2 (4-pixel padding
    and random 32×32 crops on CIFAR-10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from dicelab.exceptions import ConfigError
from dicelab.space import hp
from dicelab.stages import Category
from dicelab.techniques._augment import ImageAugmentation
from dicelab.techniques._base import register_technique

# F.pad's name for each fill
_PAD_MODES = {"zero": "constant", "reflect": "reflect"}


@register_technique
@dataclass(repr=False)
class RandomCrop(ImageAugmentation):
    """Pad each image by ``padding`` pixels and crop it back at a random offset.

    Args:
        padding: pixels added on each side; ``0`` (default) is off, ``4`` the CIFAR standard.
        mode: fill of the padding, ``"zero"`` (default) or ``"reflect"``.

    Example:
        >>> x = torch.rand(4, 3, 32, 32)
        >>> out = RandomCrop(padding=4).augment(x)
        >>> out.shape
        torch.Size([4, 3, 32, 32])
    """

    name: ClassVar[str] = "random_crop"
    category: ClassVar[Category] = Category.DATA
    strength: ClassVar[str] = "padding"
    priority: ClassVar[int] = 15

    padding: int = hp(
        0, valid=(0, None), search=(0, 8), doc="pixels padded on each side, then cropped off"
    )
    mode: str = hp("zero", choices=tuple(_PAD_MODES), doc="fill of the padding")

    def draw_offsets(self, batch: int, device: torch.device) -> torch.Tensor:
        """The next ``batch`` window corners ``(B, 2)`` = (row, column) in the padded images,
        each uniform on {0, …, 2·padding} (int64)."""
        high = 2 * self.padding + 1
        return torch.randint(0, high, (batch, 2), generator=self.rng(device), device=device)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        if self.mode == "reflect" and self.padding >= min(height, width):
            raise ConfigError(
                f"techniques.{self.name}.padding",
                self.padding,
                f"must be below the image size ({height}x{width}) with mode=reflect, which "
                "mirrors the image's own rows and columns; use mode=zero or a smaller padding",
            )
        offsets = self.draw_offsets(batch, x.device)
        padded = F.pad(x, (self.padding,) * 4, mode=_PAD_MODES[self.mode])
        # every window of the padded images, a view (B, C, 2p + 1, 2p + 1, H, W): no copy
        windows = padded.unfold(2, height, 1).unfold(3, width, 1)
        rows = torch.arange(batch, device=x.device)
        return windows[rows, :, offsets[:, 0], offsets[:, 1]]
