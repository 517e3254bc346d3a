"""Batch-size schedule: the authors' periodic doubling or halving of the mini-batch size.

The same rule as the learning-rate schedule: the gene ``s`` ∈ [−1, 1] sets a period of
``P = int((1 − |s|) · E) + 1`` epochs (``E = ctx.epochs``, the planned number of epochs), and at
every epoch ``e > 0`` with ``e % P == 0`` the batch size is doubled (``s > 0``) or halved
(``s < 0``, integer division) and clipped to [low, high]. After ``k = epoch // P`` changes the
epoch's batch size is, in closed form:

    size = base_size                                   if k = 0
    size = clip(base_size · 2^k, low, high)            if k > 0 and s > 0
    size = clip(base_size // 2^k, low, high)           if k > 0 and s < 0

``low`` and ``high`` are the clip bounds, fixed at the authors' VGG ``batch_range`` [128, 1024]
(they are not searched). As for the learning rate, clipping after every change (the authors'
loop) equals clipping the closed form whenever ``base_size`` lies in [low, high], which it
always does in the paper's space (the batch gene is drawn from ``batch_range``); repeated
floor-halving equals one floor division by 2^k.

Stage: epoch start (``batch_size`` hook); the loop batches the data with the returned size for
the whole epoch, as the authors rebuild their dataset batching every epoch. The result is a pure
function of (base_size, epoch). Deterministic: it draws no random numbers. Unlike the per-step
hooks it ignores ``ctx.training``: the size belongs to the epoch, so a query made while the
Injector is paused gives the same answer.

References:
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dicelab.exceptions import ConfigError
from dicelab.space import hp
from dicelab.stages import Category, Context
from dicelab.techniques._anneal import schedule_changes
from dicelab.techniques._base import BaseTechnique, register_technique


@register_technique
@dataclass(repr=False)
class BatchSchedule(BaseTechnique):
    """Double (``s > 0``) or halve (``s < 0``) the batch size every ``P`` epochs.

    Args:
        s: schedule gene; ``|s|`` sets the period ``P = int((1 − |s|) · epochs) + 1`` and the
            sign the direction; ``0.0`` (default) keeps the batch size constant.
        low: lower clip bound of the batch size (the authors' VGG 128; not searched).
        high: upper clip bound of the batch size (the authors' VGG 1024; not searched).

    Raises:
        RuntimeError: from the hook, if ``s != 0`` and the planned number of epochs is unknown
            (``ctx.epochs == 0``: pass ``epochs=`` to ``Injector.setup``).

    Example:
        >>> schedule = BatchSchedule(s=-1.0)
        >>> [schedule.batch_size(512, 512, Context(epoch=e, epochs=4)) for e in range(4)]
        [512, 256, 128, 128]
    """

    name: ClassVar[str] = "batch_schedule"
    category: ClassVar[Category] = Category.OPTIMIZATION
    strength: ClassVar[str] = "s"
    deterministic: ClassVar[bool] = True

    s: float = hp(0.0, valid=(-1.0, 1.0), search=(-1.0, 1.0), doc="period and direction gene")
    low: int = hp(128, valid=(1, None), doc="lower clip bound of the batch size")
    high: int = hp(1024, valid=(1, None), doc="upper clip bound of the batch size")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.low > self.high:
            raise ConfigError(
                f"techniques.{self.name}.low", self.low, f"must not exceed high={self.high}"
            )

    def batch_size(self, size: int, base_size: int, ctx: Context) -> int:
        """Epoch start: the batch size of epoch ``ctx.epoch`` for the base size ``base_size``."""
        if self.is_noop:
            return size
        changes = schedule_changes(self.s, ctx.epochs, ctx.epoch, technique=self.name)
        if changes == 0:
            return base_size
        value = base_size * 2**changes if self.s > 0 else base_size // 2**changes
        return min(max(value, self.low), self.high)
