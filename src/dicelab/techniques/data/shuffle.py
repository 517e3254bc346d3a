"""Shuffle: a fresh random order of the training examples every epoch.

At the start of every epoch the examples are visited in the order of a new uniform random
permutation of ``range(N)``:

    order_e ~ Uniform(permutations of {0, …, N − 1}),   drawn independently for each epoch e

Off (the default, the authors' ``shuffle = 0``), every epoch visits the examples in their
stored order. Stage: DATA, epoch start (``data_order``); the permutation is drawn on the CPU
from the technique's own stream, so it does not depend on where the model runs.

Deviation from the authors' code: they call ``tf.data.Dataset.shuffle(buffer_size=1024)``,
a *windowed* shuffle: an example can only move within roughly 1024 positions of its place, so
on 48 000 training examples the order stays close to the stored one. Here the permutation is
full (every order equally likely), the usual meaning of "shuffle each epoch" in PyTorch.

References:
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from dicelab.space import hp
from dicelab.stages import Category, Context
from dicelab.techniques._base import BaseTechnique, register_technique


@register_technique
@dataclass(repr=False)
class Shuffle(BaseTechnique):
    """Visit the training examples in a new random order every epoch.

    Args:
        enabled: draw a fresh permutation each epoch; ``False`` (default) keeps the stored
            order.

    Example:
        >>> order = Shuffle(enabled=True).data_order(5, Context())
        >>> sorted(order.tolist())
        [0, 1, 2, 3, 4]
    """

    name: ClassVar[str] = "shuffle"
    category: ClassVar[Category] = Category.DATA
    strength: ClassVar[str] = "enabled"

    enabled: bool = hp(False, choices=(False, True), doc="new random order every epoch")

    def data_order(self, size: int, ctx: Context) -> torch.Tensor | None:
        if self.is_noop or not ctx.training:
            return None
        return torch.randperm(size, generator=self.rng("cpu"))
