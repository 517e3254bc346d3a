"""Batched image operations shared by the DATA-stage augmentations.

Each geometric augmentation (rotation, zoom, translation) draws its own per-image parameters,
builds one ``(B, 2, 3)`` affine map per batch and resamples the batch once through
:func:`resample`, as each Keras preprocessing layer interpolates once.

The maps go from **output** pixel to **input** pixel (the inverse of the visible motion, the
convention of ``affine_grid`` and of Keras' ``ImageProjectiveTransform``), in pixel units with
the origin at the image centre and ``y`` pointing down: column ``j`` and row ``i`` sit at
``u = j − (W − 1)/2``, ``v = i − (H − 1)/2``. Working in pixels keeps rotations rigid on
non-square images; :func:`resample` converts to ``affine_grid``'s normalised coordinates.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from dicelab.exceptions import ConfigError
from dicelab.stages import Context
from dicelab.techniques._base import BaseTechnique


def require_images(technique: str, x: torch.Tensor) -> None:
    """Raise ConfigError unless ``x`` is an image batch ``(B, C, H, W)``.

    Args:
        technique: registry name of the caller, for the error message.
        x: the input batch.
    """
    if x.ndim != 4:
        raise ConfigError(
            f"techniques.{technique}",
            tuple(x.shape),
            "needs image batches (B, C, H, W), not an input of this shape; turn it off for "
            "non-image data such as mnist1d signals",
        )


def symmetric_uniform(
    shape: tuple[int, ...], bound: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Float32 draws from U[−bound, bound] of ``shape`` on ``device`` (one call to ``rand``)."""
    draw = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    return (2.0 * draw - 1.0) * bound


def resample(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Resample each image of ``x`` through its own output → input affine map.

    Bilinear interpolation; points outside the image are reflected about its border, Keras'
    default ``fill_mode="reflect"`` (``d c b a | a b c d | d c b a``).

    Args:
        x: images ``(B, C, H, W)``.
        matrix: maps ``(B, 2, 3)`` in centred pixel units (see the module docstring).

    Returns:
        The resampled images, same shape, dtype and device as ``x``.

    Example:
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
        >>> torch.allclose(resample(x, identity), x)
        True
    """
    height, width = x.shape[-2:]
    # normalised coordinate n relates to pixels by u = n·W/2, v = n·H/2 (align_corners=False)
    to_normalised = torch.tensor(
        [[1.0, height / width, 2.0 / width], [width / height, 1.0, 2.0 / height]],
        device=matrix.device,
        dtype=matrix.dtype,
    )
    theta = (matrix * to_normalised).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class ImageAugmentation(BaseTechnique):
    """A DATA technique that transforms a training batch of images ``(B, C, H, W)`` and leaves
    the labels alone; identity outside training and when off.

    Subclasses implement :meth:`augment`.
    """

    needs_images: ClassVar[bool] = True

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """The transformed batch (drawing from the technique's own stream)."""
        raise NotImplementedError

    def on_batch(
        self, x: torch.Tensor, y: torch.Tensor, ctx: Context
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.is_noop or not ctx.training:
            return x, y
        require_images(self.name, x)
        return self.augment(x), y


class AffineAugmentation(ImageAugmentation):
    """A DATA technique that moves each image by its own random affine map.

    Subclasses implement :meth:`affine`; the hook draws the batch's maps from the technique's
    stream and resamples the batch once.
    """

    def affine(self, batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """The next ``batch`` output → input maps ``(B, 2, 3)`` in centred pixel units."""
        raise NotImplementedError

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        return resample(x, self.affine(batch, height, width, x.device))
