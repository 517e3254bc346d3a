"""The data containers every loader returns, and the dataset registry.

Images are stored as ``uint8`` and converted to ``float32`` one batch at a time on the device
(:func:`to_float`): a quarter of the memory of a float copy, and the same bytes the official
files hold. Signal datasets (mnist1d) are stored as ``float32`` directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dicelab.registry import Registry


@dataclass(frozen=True)
class Split:
    """Examples and their labels.

    Attributes:
        x: inputs, one row per example: images as ``uint8`` (N, C, H, W), signals as
            ``float32`` (N, C, L).
        y: class labels as ``int64`` (N,).
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.y.ndim != 1 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"a split needs one label per example; got x {tuple(self.x.shape)} and "
                f"y {tuple(self.y.shape)}"
            )
        # Every loader path (fresh build, cache, custom function) must give the same layout,
        # or kernels that pick a path by strides (convolutions) give other results.
        object.__setattr__(self, "x", canonical(self.x))
        object.__setattr__(self, "y", canonical(self.y))

    def __len__(self) -> int:
        return self.y.shape[0]

    def to(self, device: torch.device | str) -> Split:
        """This split with both tensors on ``device``."""
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class DataBundle:
    """A dataset split for one run.

    Attributes:
        name: the dataset's name (a registered name or ``module:function``).
        train: the examples trained on.
        val: the validation examples under ``split="search"``; ``None`` under ``"final"``.
        test: the official test set.
        num_classes: number of classes; labels are ``0 .. num_classes - 1``.
        input_shape: shape of one example, e.g. ``(1, 28, 28)`` or ``(1, 40)``.
    """

    name: str
    train: Split
    val: Split | None
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]

    def to(self, device: torch.device | str) -> DataBundle:
        """This bundle with every split on ``device``."""
        return dataclasses.replace(
            self,
            train=self.train.to(device),
            val=None if self.val is None else self.val.to(device),
            test=self.test.to(device),
        )


@dataclass(frozen=True)
class RawData:
    """A dataset as published: the official training and test sets, before any split."""

    train: Split
    test: Split
    num_classes: int


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset.

    Attributes:
        name: the name ``data.name`` selects it by.
        description: one line, shown by ``dicelab list datasets``.
        offline: whether it loads without any file or network access beyond installed
            packages (and a cache under the data root).
        loader: ``(root, download) -> RawData``; ``root`` is the data folder, which holds one
            subfolder per dataset.
    """

    name: str
    description: str
    offline: bool
    loader: Callable[[Path, bool], RawData]


DATASETS: Registry[DatasetInfo] = Registry("dataset", "data.name")


def canonical_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The strides of a freshly allocated row-major tensor of ``shape``."""
    strides: list[int] = []
    step = 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def canonical(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in the canonical row-major layout: itself if it already has it, else a copy.

    ``Tensor.contiguous()`` is not enough: a tensor with a size-1 dimension counts as
    contiguous whatever that dimension's stride, and an ``(N, 1, H, W)`` tensor with strides
    ``(HW, 1, W, 1)`` (what ``numpy_array[:, None]`` gives) is then *also* channels-last, so
    convolutions take their channels-last path and compute different numbers than on the
    same values in the usual layout.
    """
    if tuple(tensor.stride()) == canonical_strides(tuple(tensor.shape)):
        return tensor
    return tensor.clone(memory_format=torch.contiguous_format)


def register(info: DatasetInfo) -> DatasetInfo:
    """Add ``info`` to :data:`DATASETS` under its name."""
    return DATASETS.register(info.name)(info)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """Inputs as ``float32``: ``uint8`` images scaled to [0, 1], float inputs unchanged.

    Called on each batch after it is on the device, so the stored data stays ``uint8``.

    Raises:
        TypeError: for integer types other than ``uint8`` (their scale is unknown).
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255)
    if x.is_floating_point():
        return x.to(torch.float32)
    raise TypeError(f"expected uint8 or floating-point inputs, got {x.dtype}")


def tail_start(n: int, fraction: float) -> int:
    """Index where the last ``fraction`` of ``n`` examples begins (tail size rounded)."""
    return n - round(n * fraction)
