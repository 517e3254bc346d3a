"""chance_warning: one line when most finished trials scored at chance or were cut."""

from __future__ import annotations

import math

import pytest

from dicelab.tune._health import chance_level, chance_warning


def test_most_trials_at_chance_gives_one_line_with_cause_and_fix() -> None:
    values = [0.1007] * 9 + [0.95, 0.97, 0.96]
    line = chance_warning(values, num_classes=10, cut=0.12)
    assert line is not None and "\n" not in line
    assert line.startswith("9 of 12 trials scored at chance (≤ 0.12 with 10 classes)")
    for words in ("BatchNorm", "learning rate", "train.epochs", "train.recalibrate_bn=true"):
        assert words in line


def test_healthy_or_half_failed_searches_give_none() -> None:
    assert chance_warning([0.95, 0.97, 0.1, 0.96], 10, 0.12) is None
    assert chance_warning([0.1, 0.1, 0.9, 0.9], 10, 0.12) is None  # half is not most
    assert chance_warning([], 10, 0.12) is None


def test_too_few_trials_say_nothing() -> None:
    assert chance_warning([0.1, 0.1], 10, 0.12) is None
    assert chance_warning([0.1, 0.1], 10, 0.12, least=2) is not None


def test_cut_trials_count_and_are_named() -> None:
    """With a cut threshold above chance, runs stopped below it count as failed."""
    values = [0.3, 0.25, 0.4, 0.99]
    line = chance_warning(values, 10, cut=0.5)
    assert line is not None and line.startswith("3 of 4 trials")
    assert "cut below 0.5" in line
    assert chance_warning(values, 10, cut=0.0) is None  # the cut is off: 0.3 is not chance


def test_chance_scales_with_the_classes_and_nan_is_left_out() -> None:
    assert chance_level(10) == pytest.approx(0.12)
    assert chance_level(2) == pytest.approx(0.6)
    assert chance_warning([0.55, 0.58, 0.9], 2, 0.0) is not None
    assert chance_warning([0.011, 0.012, math.nan, math.nan, math.nan], 100, 0.0) is None
    assert chance_warning([0.011, 0.012, 0.009, math.nan], 100, 0.0) is not None
    with pytest.raises(ValueError, match="num_classes"):
        chance_warning([0.5], 1, 0.0)
