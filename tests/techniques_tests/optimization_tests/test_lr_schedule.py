"""Learning-rate schedule: the authors' doubling/halving table, clipping, and the Injector path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques import Injector
from dicelab.techniques._anneal import schedule_changes
from dicelab.techniques.optimization.lr_schedule import LrSchedule

# (s, planned epochs E, base lr) -> the lr of epochs 0, 1, 2, ... computed by hand from
# P = int((1 - |s|) * E) + 1, a change at every e > 0 with e % P == 0, clip to [1e-5, 1e-1].
TABLE = [
    # P = int(0.5 * 10) + 1 = 6: one doubling at epoch 6.
    (0.5, 10, 1e-3, [1e-3] * 6 + [2e-3] * 6),
    (-0.5, 10, 1e-3, [1e-3] * 6 + [5e-4] * 6),
    # s = 1: P = 1, a change every epoch; 0.16 is clipped to 0.1.
    (1.0, 5, 1e-2, [1e-2, 2e-2, 4e-2, 8e-2, 1e-1, 1e-1]),
    # s = -1: P = 1; 6.25e-6 is clipped to 1e-5.
    (-1.0, 5, 1e-4, [1e-4, 5e-5, 2.5e-5, 1.25e-5, 1e-5, 1e-5]),
    # P = int(0.75 * 4) + 1 = 4.
    (0.25, 4, 1e-3, [1e-3] * 4 + [2e-3] * 4 + [4e-3]),
    # (1 - 0.8) * 20 = 3.9999999999999996 in floating point, so P = 4, not 5 (the authors'
    # int() truncates the same way).
    (0.8, 20, 1e-3, [1e-3] * 4 + [2e-3] * 4 + [4e-3]),
    # (1 - 0.9) * 10 = 0.9999999999999998, so P = 1: halving every epoch, clipped at 1e-5.
    (-0.9, 10, 4e-5, [4e-5, 2e-5, 1e-5, 1e-5]),
    # P = int(0.95 * 20) + 1 = 20: no change within the planned 20 epochs.
    (0.05, 20, 1e-3, [1e-3] * 20),
    # s = 0 (off): constant, even without a planned number of epochs.
    (0.0, 0, 3e-3, [3e-3] * 5),
]


def schedule(technique: LrSchedule, epochs: int, base: float, count: int) -> list[float]:
    return [
        technique.learning_rate(base, base, Context(epoch=e, epochs=epochs)) for e in range(count)
    ]


@pytest.mark.parametrize(("s", "epochs", "base", "expected"), TABLE)
def test_table(s: float, epochs: int, base: float, expected: list[float]) -> None:
    # Doubling and halving are exact in binary floating point, so the values compare with ==.
    assert schedule(LrSchedule(s=s), epochs, base, len(expected)) == expected


def test_clip_bounds_are_hyperparameters() -> None:
    technique = LrSchedule(s=1.0, low=1e-3, high=5e-3)
    assert schedule(technique, 4, 2e-3, 4) == [2e-3, 4e-3, 5e-3, 5e-3]
    technique = LrSchedule(s=-1.0, low=1e-3, high=5e-3)
    assert schedule(technique, 4, 2e-3, 4) == [2e-3, 1e-3, 1e-3, 1e-3]


def test_closed_form_equals_the_authors_step_wise_clipping() -> None:
    for s in (1.0, -1.0, 0.5, -0.3):
        technique = LrSchedule(s=s)
        for base in (1e-5, 3e-4, 1e-3, 0.07, 1e-1):  # every base inside [low, high]
            lr, step_wise = base, []
            period = int((1 - abs(s)) * 30) + 1
            for epoch in range(30):
                if epoch > 0 and epoch % period == 0:
                    lr = min(max(lr * 2 if s > 0 else lr / 2, 1e-5), 1e-1)
                step_wise.append(lr)
            assert schedule(technique, 30, base, 30) == step_wise


def test_a_very_long_run_saturates_instead_of_overflowing() -> None:
    technique = LrSchedule(s=1.0)
    assert technique.learning_rate(1e-3, 1e-3, Context(epoch=5000, epochs=5000)) == 1e-1
    technique = LrSchedule(s=-1.0)
    assert technique.learning_rate(1e-3, 1e-3, Context(epoch=5000, epochs=5000)) == 1e-5


def test_result_depends_on_base_and_epoch_only() -> None:
    technique = LrSchedule(s=1.0)
    ctx = Context(epoch=2, epochs=4)
    assert technique.learning_rate(0.5, 1e-3, ctx) == technique.learning_rate(7e-3, 1e-3, ctx)
    assert technique.learning_rate(0.5, 1e-3, ctx) == 4e-3
    paused = Context(epoch=2, epochs=4, training=False)
    assert technique.learning_rate(0.5, 1e-3, paused) == 4e-3


def test_period_helper() -> None:
    assert [schedule_changes(0.5, 10, e, technique="t") for e in (0, 5, 6, 11, 12)] == [
        0,
        0,
        1,
        1,
        2,
    ]
    assert [schedule_changes(-1.0, 3, e, technique="t") for e in range(4)] == [0, 1, 2, 3]
    assert schedule_changes(0.0, 3, 2, technique="t") == 0  # P = E + 1: never within the run


def test_needs_the_planned_epochs() -> None:
    with pytest.raises(RuntimeError, match=r"lr_schedule.*Injector.setup\(\.\.\., epochs=N\)"):
        LrSchedule(s=0.5).learning_rate(1e-3, 1e-3, Context(epoch=1))
    injector = Injector([LrSchedule(s=0.5)])
    injector.setup(nn.Linear(2, 2), num_classes=2)
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1e-3)
    with pytest.raises(RuntimeError, match="epochs"):
        injector.start_epoch(0, optimizer)


def test_injector_sets_every_param_group_and_keeps_base_rates() -> None:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(
        [{"params": [model.weight], "lr": 1e-3}, {"params": [model.bias], "lr": 1e-2}]
    )
    injector = Injector.from_config({"lr_schedule": {"s": 1.0}}, seed=0)
    injector.setup(model, num_classes=2, epochs=4)
    seen = []
    for epoch in range(4):
        injector.start_epoch(epoch, optimizer)
        seen.append([group["lr"] for group in optimizer.param_groups])
    assert seen == [[1e-3, 1e-2], [2e-3, 2e-2], [4e-3, 4e-2], [8e-3, 8e-2]]
    state = injector.state_dict()
    assert state["base_lrs"] == [1e-3, 1e-2]

    # A resumed run: the optimizer holds epoch 3's rates, the base rates come from the state.
    resumed = Injector.from_config({"lr_schedule": {"s": 1.0}}, seed=0)
    resumed.setup(model, num_classes=2, epochs=4)
    resumed.load_state_dict(state)
    resumed.start_epoch(4, optimizer)
    assert [group["lr"] for group in optimizer.param_groups] == [1.6e-2, 1e-1]
    assert resumed.state_dict()["base_lrs"] == [1e-3, 1e-2]


def test_deterministic_and_global_rng_untouched() -> None:
    before = torch.get_rng_state()
    first, second = LrSchedule(s=-0.7), LrSchedule(s=-0.7)
    first.bind(RandomStreams(0))
    second.bind(RandomStreams(1))
    assert LrSchedule.deterministic
    assert schedule(first, 10, 1e-2, 10) == schedule(second, 10, 1e-2, 10)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"s": 1.5}, "s"),
        ({"s": -1.01}, "s"),
        ({"s": "up"}, "s"),
        ({"s": 0.5, "low": -1e-5}, "low"),
        ({"s": 0.5, "low": 0.5}, "low"),  # above high = 0.1
        ({"s": 0.5, "high": -1.0}, "high"),
    ],
)
def test_bad_hyperparameters_are_rejected(params: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=f"techniques.lr_schedule.{field}"):
        LrSchedule(**params)  # type: ignore[arg-type]
