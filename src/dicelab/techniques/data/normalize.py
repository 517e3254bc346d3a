"""Normalize: per-channel standardisation ``(x − mean) / std`` with a dataset's statistics.

torchvision ``Normalize(mean, std)`` on the batch, channel ``k`` of every input:

    x[:, k] ← (x[:, k] − mean_k) / std_k

with the statistics of a preset or given explicitly (``preset="custom"``):

=================  ==========================  ==========================  ====================
preset             mean                        std                         source
=================  ==========================  ==========================  ====================
``mnist``          0.1307                      0.3081                      pytorch/examples
                                                                           ``mnist/main.py``
``fashion_mnist``  0.2860                      0.3530                      the training set's
                                                                           60,000 images
``cifar10``        0.4914, 0.4822, 0.4465      0.2023, 0.1994, 0.2010      the RWP authors
``cifar100``       0.5071, 0.4865, 0.4409      0.2673, 0.2564, 0.2762      the training set
=================  ==========================  ==========================  ====================

The ``cifar10`` values are the RWP authors' (nblt/mARWP ``utils.py``, commit f12df73, line 78),
the ones most CIFAR code copies; their std is not the pixels' standard deviation (that is
0.2470, 0.2435, 0.2616) but is kept for fidelity. The authors normalise CIFAR-100 with these
same CIFAR-10 values (line 100); ``cifar100`` is CIFAR-100's own statistics (as published, e.g.
weiaicunzai/pytorch-cifar100 ``conf/global_settings.py``), so reproduce the authors on CIFAR-100
with ``preset: cifar10``.

Where it acts. The transform is deterministic and the network needs it on *every* input, so
unlike the random techniques it is not an identity in evaluation (``in_evaluation``):

* training batches: in the DATA stage, after every augmentation on pixels in [0, 1] (flip,
  random crop, rotation, zoom, translation, contrast, which clips to [0, 1], and input noise,
  whose ``std`` is in pixel units) and before ``cutout``. That is the RWP authors' order
  (``RandomHorizontalFlip``, ``RandomCrop``, ``ToTensor``, ``Normalize``, ``Cutout``): crop
  padding is black in pixel units, and a cutout hole is 0 in normalised units (the mean colour);
* every other forward pass (the model in ``eval()`` mode, or the injector paused, as when the
  trainer evaluates or recalibrates BatchNorm): a forward pre-hook on the model normalises its
  input, where the DATA stage did not run.

A training forward pass (model in training mode, injector not paused) is left to the DATA stage,
so the inputs are never normalised twice; in a loop of your own, pass every training batch
through ``injector.data`` and evaluate in ``eval()`` mode or inside ``injector.paused()``.
Inputs ``(B, C, ...)`` with as many channels as the statistics have values; the output keeps
the input's dtype and memory format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from dicelab.config import coerce
from dicelab.exceptions import ConfigError
from dicelab.space import hp
from dicelab.stages import Category, Context
from dicelab.techniques._base import BaseTechnique, register_technique

#: Per-channel (mean, std) of each preset, on pixels in [0, 1] (sources in the module docs).
PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@register_technique
@dataclass(repr=False)
class Normalize(BaseTechnique):
    """Standardise each input channel with a preset's statistics or with ``mean`` and ``std``.

    Args:
        preset: ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"``,
            ``"custom"`` (``mean`` and ``std`` below) or ``"none"`` (default, off).
        mean: one value per channel, with ``preset="custom"`` only.
        std: one positive value per channel, with ``preset="custom"`` only.

    Example:
        >>> x = torch.tensor([1.0, 0.75]).view(1, 2, 1, 1)  # one image, two channels
        >>> norm = Normalize(preset="custom", mean=[0.5, 0.25], std=[0.25, 0.5])
        >>> norm.on_batch(x, torch.zeros(1), Context())[0].flatten()
        tensor([2., 1.])
    """

    name: ClassVar[str] = "normalize"
    category: ClassVar[Category] = Category.DATA
    strength: ClassVar[str] = "preset"
    priority: ClassVar[int] = 80
    deterministic: ClassVar[bool] = True
    in_evaluation: ClassVar[bool] = True

    preset: str = hp(
        "none", choices=("none", *PRESETS, "custom"), doc="statistics to normalise with"
    )
    mean: tuple[float, ...] = hp((), doc="per-channel means (preset custom)")
    std: tuple[float, ...] = hp((), doc="per-channel standard deviations (preset custom)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.mean = self._values("mean", self.mean)
        self.std = self._values("std", self.std)
        given = bool(self.mean or self.std)
        if self.preset == "custom":
            if not (self.mean and len(self.mean) == len(self.std)):
                raise ConfigError(
                    f"techniques.{self.name}.std",
                    list(self.std),
                    f"preset=custom needs mean and std with one value per channel each; got "
                    f"{len(self.mean)} mean and {len(self.std)} std values",
                )
            if min(self.std) <= 0:
                raise ConfigError(
                    f"techniques.{self.name}.std", list(self.std), "every value must be above 0"
                )
        elif given:
            raise ConfigError(
                f"techniques.{self.name}.preset",
                self.preset,
                "mean and std are read with preset=custom only; set preset to custom to give "
                "your own, or leave them out to use a preset's",
            )

    def _values(self, field: str, values: Any) -> tuple[float, ...]:
        """``values`` (a list or tuple of finite numbers) as a tuple of floats, checked as
        every configuration list is; else ConfigError naming ``field``."""
        listed = list(values) if isinstance(values, tuple) else values
        return tuple(coerce(list[float], listed, f"techniques.{self.name}.{field}"))

    @property
    def statistics(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The per-channel (mean, std) this technique normalises with."""
        return (self.mean, self.std) if self.preset == "custom" else PRESETS[self.preset]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x − mean) / std`` on channel dimension 1 of ``x`` (same dtype and layout)."""
        mean, std = self.statistics
        if x.ndim < 2 or x.shape[1] != len(mean):
            raise ConfigError(
                f"techniques.{self.name}.preset",
                self.preset,
                f"has statistics for {len(mean)} channel(s), and these inputs have shape "
                f"{tuple(x.shape)} (channels on dimension 1); choose the preset of this "
                "dataset, or preset=custom with one mean and std per channel",
            )
        shape = (1, len(mean)) + (1,) * (x.ndim - 2)
        mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)
        std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(shape)
        return (x - mean_t) / std_t

    def on_batch(
        self, x: torch.Tensor, y: torch.Tensor, ctx: Context
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.is_noop or not ctx.training:
            return x, y
        return self.normalize(x), y

    def attach(self, model: nn.Module, ctx: Context) -> list[RemovableHandle]:
        """A forward pre-hook normalising the model's input on the passes the DATA stage does
        not see: the model in ``eval()`` mode or the injector paused."""
        if self.is_noop:
            return []

        def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            if module.training and ctx.training:  # a training pass: the DATA stage did it
                return None
            return (self.normalize(args[0]), *args[1:])

        return [model.register_forward_pre_hook(hook)]
