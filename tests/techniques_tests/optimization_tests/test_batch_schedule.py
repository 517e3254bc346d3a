"""Batch-size schedule: the authors' doubling/halving table, clipping to [128, 1024], Injector."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques import Injector
from dicelab.techniques.optimization.batch_schedule import BatchSchedule

# (s, planned epochs E, base size) -> the batch size of epochs 0, 1, 2, ... computed by hand
# from P = int((1 - |s|) * E) + 1, a change at every e > 0 with e % P == 0, clip to [128, 1024].
TABLE = [
    # s = 1: P = 1, doubling every epoch up to 1024.
    (1.0, 5, 128, [128, 256, 512, 1024, 1024, 1024]),
    # s = -1: P = 1, halving every epoch down to 128.
    (-1.0, 5, 1024, [1024, 512, 256, 128, 128, 128]),
    # P = int(0.5 * 4) + 1 = 3.
    (0.5, 4, 128, [128, 128, 128, 256, 256, 256, 512]),
    (-0.5, 4, 1000, [1000, 1000, 1000, 500, 500, 500, 250]),
    # Integer halving: 300 // 2 = 150, 300 // 4 = 75 -> clipped to 128.
    (-1.0, 3, 300, [300, 150, 128, 128]),
    # 200 * 2 = 400, * 4 = 800, * 8 = 1600 -> clipped to 1024.
    (1.0, 3, 200, [200, 400, 800, 1024]),
    # (1 - 0.8) * 20 = 3.9999999999999996 in floating point, so P = 4 (the authors' int()).
    (0.8, 20, 128, [128] * 4 + [256] * 4 + [512]),
    # s = 0 (off): constant, even without a planned number of epochs.
    (0.0, 0, 777, [777] * 5),
]


def schedule(technique: BatchSchedule, epochs: int, base: int, count: int) -> list[int]:
    return [
        technique.batch_size(base, base, Context(epoch=e, epochs=epochs)) for e in range(count)
    ]


@pytest.mark.parametrize(("s", "epochs", "base", "expected"), TABLE)
def test_table(s: float, epochs: int, base: int, expected: list[int]) -> None:
    sizes = schedule(BatchSchedule(s=s), epochs, base, len(expected))
    assert sizes == expected
    assert all(type(size) is int for size in sizes)


def test_clip_bounds_are_the_vgg_batch_range_by_default() -> None:
    technique = BatchSchedule(s=1.0)
    assert (technique.low, technique.high) == (128, 1024)
    for epoch in range(1, 12):
        for base in (128, 129, 500, 1024):
            size = technique.batch_size(base, base, Context(epoch=epoch, epochs=10))
            assert 128 <= size <= 1024


def test_other_clip_bounds() -> None:
    assert schedule(BatchSchedule(s=-1.0, low=16, high=64), 4, 64, 4) == [64, 32, 16, 16]
    assert schedule(BatchSchedule(s=1.0, low=16, high=64), 4, 16, 4) == [16, 32, 64, 64]


def test_closed_form_equals_the_authors_step_wise_clipping() -> None:
    for s in (1.0, -1.0, 0.4, -0.6):
        technique = BatchSchedule(s=s)
        for base in (128, 129, 300, 777, 1024):  # every base inside [low, high]
            size, step_wise = base, []
            period = int((1 - abs(s)) * 25) + 1
            for epoch in range(25):
                if epoch > 0 and epoch % period == 0:
                    size = min(max(size * 2 if s > 0 else size // 2, 128), 1024)
                step_wise.append(size)
            assert schedule(technique, 25, base, 25) == step_wise


def test_injector_returns_the_epoch_batch_size() -> None:
    injector = Injector.from_config({"batch_schedule": {"s": 1.0}}, seed=0)
    injector.setup(nn.Linear(2, 2), num_classes=2, epochs=4)
    sizes = [injector.start_epoch(e, base_batch_size=128) for e in range(5)]
    assert sizes == [128, 256, 512, 1024, 1024]
    assert injector.start_epoch(0) is None  # no base size, no batch size


def test_needs_the_planned_epochs() -> None:
    injector = Injector([BatchSchedule(s=-0.5)])
    injector.setup(nn.Linear(2, 2), num_classes=2)
    with pytest.raises(RuntimeError, match=r"batch_schedule.*epochs"):
        injector.start_epoch(0, base_batch_size=256)


def test_result_depends_on_base_and_epoch_only() -> None:
    technique = BatchSchedule(s=1.0)
    ctx = Context(epoch=1, epochs=4)
    assert technique.batch_size(999, 128, ctx) == technique.batch_size(5, 128, ctx) == 256
    assert technique.batch_size(999, 128, Context(epoch=1, epochs=4, training=False)) == 256


def test_deterministic_and_global_rng_untouched() -> None:
    before = torch.get_rng_state()
    first, second = BatchSchedule(s=0.7), BatchSchedule(s=0.7)
    first.bind(RandomStreams(0))
    second.bind(RandomStreams(1))
    assert BatchSchedule.deterministic
    assert schedule(first, 10, 128, 10) == schedule(second, 10, 128, 10)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"s": 2.0}, "s"),
        ({"s": 0.5, "low": 0}, "low"),
        ({"s": 0.5, "low": 64.5}, "low"),  # not an integer
        ({"s": 0.5, "low": 2048}, "low"),  # above high = 1024
        ({"s": 0.5, "high": "big"}, "high"),
    ],
)
def test_bad_hyperparameters_are_rejected(params: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=f"techniques.batch_schedule.{field}"):
        BatchSchedule(**params)  # type: ignore[arg-type]
