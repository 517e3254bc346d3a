"""Schedules shared by several techniques: the annealed noise scale and the epoch doubling rule.

``annealed_std`` is the Neelakantan et al. (2015) scale used by gradient noise and weight noise
in the authors' ``train_step``; ``schedule_changes`` is the period rule that the learning-rate
and batch-size schedules share. Both are plain Python arithmetic on step and epoch counters, so
calling them in a hook costs no device synchronisation.
"""

from __future__ import annotations

import math


def annealed_std(eta: float, gamma: float, step: int) -> float:
    """The standard deviation ``sqrt(eta / (1 + step)^gamma)`` of the noise at update ``step``.

    Args:
        eta: the variance at ``step = 0`` (a variance, not a standard deviation).
        gamma: the annealing exponent (0.55 in the paper and the authors' code).
        step: updates done so far, from 0 (the authors' ``optimizer.iterations``).

    Example:
        >>> annealed_std(0.25, 0.55, 0)
        0.5
    """
    return math.sqrt(eta / (1 + step) ** gamma)


def schedule_changes(strength: float, epochs: int, epoch: int, *, technique: str) -> int:
    """How many times a doubling/halving schedule has changed its value by epoch ``epoch``.

    The value changes at every epoch ``e > 0`` with ``e % P == 0``, where the period is
    ``P = int((1 − |strength|) · epochs) + 1`` (the authors' rule, including Python's
    truncating ``int`` of a float product), so the count is ``epoch // P``.

    Args:
        strength: the schedule gene ``s`` in [−1, 1]; its sign picks doubling or halving.
        epochs: planned number of epochs (``ctx.epochs``); must be positive.
        epoch: the current epoch, from 0.
        technique: registry name of the caller, for the error message.

    Raises:
        RuntimeError: if ``epochs`` is not positive (the loop did not pass it to the Injector).

    Example:
        >>> [schedule_changes(0.5, 10, e, technique="lr_schedule") for e in (0, 5, 6, 12)]
        [0, 0, 1, 2]
    """
    if epochs <= 0:
        raise RuntimeError(
            f"{technique}: the schedule needs the planned number of epochs, `ctx.epochs > 0`, "
            f"but got epochs={epochs}. Pass it with `Injector.setup(..., epochs=N)`."
        )
    period = int((1.0 - abs(strength)) * epochs) + 1
    return epoch // period
