"""Signs that a search is measuring nothing: most trials scoring at chance.

A search whose trials all score about 1/num_classes still ends with exit 0 and a "best"
configuration, which is then noise. :func:`chance_warning` turns that pattern into one line
that names the likely causes and the fixes, for the search's progress and summary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: A score within this factor of chance (1/num_classes) counts as chance: 0.12 for 10 classes.
CHANCE_MARGIN = 1.2
#: Fewer finished trials than this say too little (one bad particle is ordinary).
LEAST_TRIALS = 3


def chance_level(num_classes: int) -> float:
    """The highest accuracy that still counts as chance for ``num_classes`` classes."""
    return CHANCE_MARGIN / num_classes


def chance_warning(
    values: Sequence[float], num_classes: int, cut: float, *, least: int = LEAST_TRIALS
) -> str | None:
    """One line when most finished trials scored at chance or were cut; otherwise ``None``.

    A value counts as failed when it is at most :func:`chance_level` (1.2/num_classes) or
    below ``cut``, the search's ``--cut-threshold`` (a stopped run scores the accuracy at
    which it was cut). "Most" is more than half of the finite values, and at least ``least``
    of them must exist. Non-finite values are left out.

    Args:
        values: the objective values (validation accuracies) of finished trials.
        num_classes: classes of the task, so chance is ``1/num_classes``.
        cut: the cut threshold of the search (0 when it is off).
        least: the fewest finite values that can trigger the warning.

    Example:
        >>> chance_warning([0.1, 0.11, 0.95], 10, 0.12)[:40]
        '2 of 3 trials scored at chance (≤ 0.12 w'
        >>> chance_warning([0.1, 0.9, 0.95], 10, 0.12) is None
        True
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    finite = [v for v in values if math.isfinite(v)]
    level = chance_level(num_classes)
    failed = sum(1 for v in finite if v <= level or v < cut)
    if len(finite) < least or 2 * failed <= len(finite):
        return None
    cut_words = f" or were cut below {cut:g}" if cut > level else ""
    return (
        f"{failed} of {len(finite)} trials scored at chance (≤ {level:.2g} with {num_classes} "
        f"classes){cut_words}: likely too few updates (train longer with train.epochs; "
        "large batches leave few updates per epoch), a learning rate too small or too large "
        "(optimizer.lr), or lagging BatchNorm statistics (train.recalibrate_bn=true)"
    )
