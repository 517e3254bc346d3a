"""Learning-rate schedules: the RWP authors' cosine to the float, torch's step schedules, the
warm-up, and the options each schedule needs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dicelab.config import ScheduleConfig, load_config
from dicelab.exceptions import ConfigError
from dicelab.optim.schedule import learning_rate, run_length


def torch_rates(make: type, length: int, lr: float = 0.1, **kwargs: object) -> list[float]:
    """The rate a ``torch.optim.lr_scheduler`` class gives each of ``length`` steps."""
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=lr)
    scheduler = make(opt, **kwargs)
    rates = []
    for _ in range(length):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return rates


def rates(config: ScheduleConfig, length: int, lr: float = 0.1) -> list[float]:
    return [learning_rate(config, lr, i, length) for i in range(length)]


def test_cosine_is_the_rwp_authors_lambda_lr_float_for_float() -> None:
    """nblt/mARWP train_rwp_cos.py: LambdaLR(_cosine_annealing(step, total, 1, 0)) with
    total = epochs · len(train_loader), stepped every iteration, from lr 0.1."""

    def authors(step: int, total_steps: int, lr_max: float, lr_min: float) -> float:
        return lr_min + (lr_max - lr_min) * 0.5 * (1 + np.cos(step / total_steps * np.pi))

    total = 7 * 13  # 7 epochs of 13 iterations
    base = 0.1
    expected = torch_rates(
        torch.optim.lr_scheduler.LambdaLR,
        total,
        lr=base,
        lr_lambda=lambda step: authors(step, total, 1, 0.0 / base),
    )
    got = rates(ScheduleConfig(name="cosine"), total, lr=base)
    assert got == expected
    assert got[0] == base and 0 < got[-1] < 1e-4  # the last update's rate is small, not 0


def test_cosine_per_epoch_is_cosine_annealing_lr_with_min_lr() -> None:
    """``interval: epoch`` is CosineAnnealingLR(T_max=epochs) stepped per epoch (the authors'
    m-ARWP script); torch computes it recursively, so agreement is to rounding."""
    config = ScheduleConfig(name="cosine", interval="epoch", min_lr=0.001)
    expected = torch_rates(torch.optim.lr_scheduler.CosineAnnealingLR, 20, T_max=20, eta_min=0.001)
    assert rates(config, 20) == pytest.approx(expected, rel=1e-12)


def test_step_and_multistep_are_torchs() -> None:
    step = ScheduleConfig(name="step", step_size=3, gamma=0.5)
    assert rates(step, 12) == pytest.approx(
        torch_rates(torch.optim.lr_scheduler.StepLR, 12, step_size=3, gamma=0.5), rel=1e-15
    )
    multi = ScheduleConfig(name="multistep", milestones=[2, 5, 9], gamma=0.1)
    assert rates(multi, 12) == pytest.approx(
        torch_rates(torch.optim.lr_scheduler.MultiStepLR, 12, milestones=[2, 5, 9], gamma=0.1),
        rel=1e-15,
    )


def test_constant_returns_the_rate_itself() -> None:
    assert all(r is not None and r == 0.0123 for r in rates(ScheduleConfig(), 5, lr=0.0123))


def test_warm_up_rises_linearly_then_the_cosine_starts_at_lr() -> None:
    config = ScheduleConfig(name="cosine", warmup=4, min_lr=0.01)
    got = rates(config, 10, lr=0.2)
    assert got[:4] == pytest.approx([0.05, 0.1, 0.15, 0.2])
    cosine = [0.01 + 0.19 * (1 + math.cos(j / 6 * math.pi)) / 2 for j in range(6)]
    assert got[4:] == pytest.approx(cosine)
    assert learning_rate(config, 0.2, 10, 10) == pytest.approx(0.01)  # the end of the run


def test_warm_up_before_a_step_schedule_keeps_its_counting() -> None:
    """Step and multistep count from the start of the run, warm-up included."""
    config = ScheduleConfig(name="multistep", warmup=2, milestones=[3], gamma=0.5)
    assert rates(config, 5, lr=1.0) == [0.5, 1.0, 1.0, 0.5, 0.5]


def test_a_warm_up_that_outlasts_the_run_is_refused() -> None:
    assert run_length(ScheduleConfig(warmup=9), updates=10, epochs=2) == 10
    assert run_length(ScheduleConfig(interval="epoch"), updates=10, epochs=2) == 2
    with pytest.raises(
        ConfigError, match=r"schedule.warmup: got 2; must be less than the run's 2 epochs"
    ):
        run_length(ScheduleConfig(interval="epoch", warmup=2), updates=10, epochs=2)


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        (["schedule.name=step"], "schedule.step_size", "must be an integer >= 1"),
        (["schedule.name=multistep"], "schedule.milestones", "at least one interval"),
        (["schedule.milestones=[5, 3]"], "schedule.milestones", "increasing integers >= 1"),
        (["schedule.milestones=[0]"], "schedule.milestones", "increasing integers >= 1"),
        (["schedule.milestones=7"], "schedule.milestones", "must be a list"),
        (["schedule.milestones=[1, x]"], "schedule.milestones[1]", "must be an integer"),
        (["schedule.gamma=0"], "schedule.gamma", "must lie in (0, 1]"),
        (["schedule.gamma=1.5"], "schedule.gamma", "must lie in (0, 1]"),
        (["schedule.warmup=-1"], "schedule.warmup", "must be >= 0"),
        (["schedule.min_lr=-0.1"], "schedule.min_lr", "must be >= 0"),
        (["schedule.interval=epochs"], "schedule.interval", "Did you mean 'epoch'?"),
        (["schedule.name=cosin"], "schedule.name", "Did you mean 'cosine'?"),
    ],
)
def test_bad_schedules_name_the_field(overrides: list[str], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    assert info.value.field == field
    assert words in str(info.value)


def test_options_of_an_unchosen_schedule_are_kept_unused() -> None:
    config = load_config(overrides=["schedule.milestones=[10, 20]", "schedule.step_size=4"])
    assert config.schedule.name == "constant"
    assert rates(config.schedule, 30) == [0.1] * 30
