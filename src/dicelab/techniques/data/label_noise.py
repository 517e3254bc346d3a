"""Label noise: a fixed random fraction of the training labels is replaced by a wrong class.

Once per run, before training, each of the N training examples is corrupted with
probability ``p``; a corrupted example gets a label drawn uniformly from the K − 1 *other*
classes and keeps it for the whole run:

    f_n ~ Bernoulli(p),   s_n ~ U{1, …, K − 1},   y_n ← (y_n + f_n·s_n) mod K

Stage: INIT draws the table (``setup``, on the CPU, from the technique's own stream, using
``ctx.train_size`` and ``ctx.num_classes``); DATA applies it to every batch, first among the
DATA hooks (before the augmentations and before label smoothing), by looking up the batch's
dataset indices ``ctx.indices``: the loop must pass them, ``Injector.data(x, y, indices)``.
Training only: evaluation, and the training accuracy the trainer reports, use the clean
labels.

As in the authors' ``Dataset(label_noise=p)`` (not one of the paper's 22 searched
dimensions, so off by default), the corruption is drawn once and fixed, not redrawn per batch
or epoch. The labels are not known at ``setup``, so the table stores the class offset
``f_n·s_n`` (0: clean) rather than the new label; ``(y + s) mod K`` with ``s`` uniform on
{1, …, K − 1} is uniform over the other classes, as in the authors' code. Soft targets
``(B, K)`` are moved the same way: their class axis is rolled by the offset.

References:
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from dicelab.space import hp
from dicelab.stages import Category, Context
from dicelab.techniques._base import BaseTechnique, register_technique


@register_technique
@dataclass(repr=False)
class LabelNoise(BaseTechnique):
    """Give a fixed random fraction ``p`` of the training examples a wrong label for the run.

    Args:
        p: probability that a training example's label is corrupted; ``0.0`` (default) is off.

    Example:
        >>> noise = LabelNoise(p=0.5)
        >>> ctx = Context(num_classes=10, train_size=6)
        >>> noise.setup(nn.Identity(), ctx)
        >>> ctx.indices = torch.arange(6)
        >>> y = torch.zeros(6, dtype=torch.long)
        >>> _, noisy = noise.on_batch(torch.zeros(6, 1), y, ctx)
        >>> bool(((noisy != 0) == (noise.state_dict()["offset"] != 0)).all())
        True
    """

    name: ClassVar[str] = "label_noise"
    category: ClassVar[Category] = Category.DATA
    strength: ClassVar[str] = "p"
    priority: ClassVar[int] = 5

    p: float = hp(0.0, valid=(0.0, 1.0), search=(0.0, 0.5), doc="fraction of labels corrupted")

    # offset of each training example's label (0: clean), on the device it was last used on
    _offset: torch.Tensor | None = field(default=None, init=False, compare=False)

    def setup(self, model: nn.Module, ctx: Context) -> None:
        if self.is_noop:
            return
        if ctx.num_classes < 2 or ctx.train_size < 1:
            raise RuntimeError(
                "label_noise needs the number of classes (at least 2) and of training "
                "examples: call Injector.setup(model, num_classes=K, train_size=N); got "
                f"num_classes={ctx.num_classes}, train_size={ctx.train_size}"
            )
        gen = self.rng("cpu")
        corrupted = torch.rand(ctx.train_size, generator=gen) < self.p
        shift = torch.randint(1, ctx.num_classes, (ctx.train_size,), generator=gen)
        self._offset = torch.where(corrupted, shift, 0)

    def on_batch(
        self, x: torch.Tensor, y: torch.Tensor, ctx: Context
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.is_noop or not ctx.training:
            return x, y
        if ctx.indices is None:
            raise RuntimeError(
                "label_noise needs the dataset indices of each batch: the training loop must "
                "pass them, Injector.data(x, y, indices)"
            )
        if self._offset is None:
            raise RuntimeError("label_noise has no corruption table: call setup() first")
        if self._offset.device != ctx.indices.device:
            self._offset = self._offset.to(ctx.indices.device)  # once, not every step
        offset = self._offset[ctx.indices].to(y.device)
        if y.is_floating_point():
            classes = y.shape[-1]
            source = torch.arange(classes, device=y.device) - offset.view(-1, 1)
            return x, y.gather(-1, source.remainder(classes))
        return x, (y + offset).remainder(ctx.num_classes)

    def state_dict(self) -> dict[str, Any]:
        return {} if self._offset is None else {"offset": self._offset}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "offset" in state:
            self._offset = state["offset"]
