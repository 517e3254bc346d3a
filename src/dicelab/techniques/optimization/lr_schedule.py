"""Learning-rate schedule: the authors' periodic doubling or halving of the learning rate.

The schedule gene ``s`` ∈ [−1, 1] sets a period of ``P = int((1 − |s|) · E) + 1`` epochs, with
``E = ctx.epochs`` the planned number of epochs. At every epoch ``e > 0`` with ``e % P == 0``
the learning rate is doubled (``s > 0``) or halved (``s < 0``) and clipped to [low, high]; ``s``
near ±1 changes it every epoch, ``s`` near 0 at most once or never, and ``s = 0`` keeps it
constant. After ``k = epoch // P`` changes the epoch's rate is, in closed form:

    lr = base_lr                                    if k = 0
    lr = clip(base_lr · 2^(+k), low, high)          if k > 0 and s > 0
    lr = clip(base_lr · 2^(−k), low, high)          if k > 0 and s < 0

The authors clip after every change; since the sequence is monotone, clipping each step gives
the same values as clipping the closed form whenever ``base_lr`` lies in [low, high] (always so
in the paper's space, where lr = 10^(−x) with x ∈ [1, 5]), and doubling or halving a float is
exact, so the results agree bit for bit. Outside [low, high] the closed form above is used.

Stage: epoch start (``learning_rate`` hook; the :class:`~dicelab.techniques.Injector` writes the
result into every optimizer param group, from the base rates it recorded at the first epoch).
Under a learning-rate schedule (the ``schedule:`` section, :mod:`dicelab.optim.schedule`) the
dicelab trainer passes each update's scheduled rate as ``base_lr`` instead: the schedule sets
the base and the gene doubles or halves it for the epoch, then clips it to [low, high]. With the
default ``constant`` schedule the base is ``optimizer.lr``, as without schedules.
The result is a pure function of (base_lr, epoch): it does not build on the rate an earlier
schedule returned. Deterministic: it draws no random numbers (the paper counts it among the
optimization-stage randomness because the search draws ``s``). Unlike the per-step hooks it
ignores ``ctx.training``: the rate belongs to the epoch, so a query made while the Injector is
paused gives the same answer.

Deviation from the authors' notebooks: ``VGG MNIST.ipynb`` rescales ``s`` for the longer final
runs so the period in epochs stays the same; that rescaling is left to the caller.

References:
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from dicelab.exceptions import ConfigError
from dicelab.space import hp
from dicelab.stages import Category, Context
from dicelab.techniques._anneal import schedule_changes
from dicelab.techniques._base import BaseTechnique, register_technique


@register_technique
@dataclass(repr=False)
class LrSchedule(BaseTechnique):
    """Double (``s > 0``) or halve (``s < 0``) the learning rate every ``P`` epochs.

    Args:
        s: schedule gene; ``|s|`` sets the period ``P = int((1 − |s|) · epochs) + 1`` and the
            sign the direction; ``0.0`` (default) keeps the learning rate constant.
        low: lower clip bound of the learning rate (the authors' 1e-5; not searched).
        high: upper clip bound of the learning rate (the authors' 1e-1; not searched).

    Raises:
        RuntimeError: from the hook, if ``s != 0`` and the planned number of epochs is unknown
            (``ctx.epochs == 0``: pass ``epochs=`` to ``Injector.setup``).

    Example:
        >>> schedule = LrSchedule(s=1.0)
        >>> [schedule.learning_rate(0.02, 0.02, Context(epoch=e, epochs=4)) for e in range(4)]
        [0.02, 0.04, 0.08, 0.1]
    """

    name: ClassVar[str] = "lr_schedule"
    category: ClassVar[Category] = Category.OPTIMIZATION
    strength: ClassVar[str] = "s"
    deterministic: ClassVar[bool] = True

    s: float = hp(0.0, valid=(-1.0, 1.0), search=(-1.0, 1.0), doc="period and direction gene")
    low: float = hp(1e-5, valid=(0.0, None), doc="lower clip bound of the learning rate")
    high: float = hp(1e-1, valid=(0.0, None), doc="upper clip bound of the learning rate")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.low > self.high:
            raise ConfigError(
                f"techniques.{self.name}.low", self.low, f"must not exceed high={self.high}"
            )

    def learning_rate(self, lr: float, base_lr: float, ctx: Context) -> float:
        """Epoch start: the learning rate of epoch ``ctx.epoch`` for the base rate ``base_lr``."""
        if self.is_noop:
            return lr
        changes = schedule_changes(self.s, ctx.epochs, ctx.epoch, technique=self.name)
        if changes == 0:
            return base_lr
        try:
            value = math.ldexp(base_lr, changes if self.s > 0 else -changes)  # exact: × 2^(±k)
        except OverflowError:  # past the float range on a very long run; the clip gives `high`
            value = math.inf
        return min(max(value, self.low), self.high)
