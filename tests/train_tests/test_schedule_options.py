"""The trainer with a learning-rate schedule and the optimizer options: the rate each epoch
records, how paper 1's lr_schedule gene composes with the schedule, clipping after the
gradient techniques, and a warm-up longer than the run refused before training."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from dicelab.config import RunConfig
from dicelab.exceptions import ConfigError
from dicelab.optim.schedule import learning_rate
from dicelab.train import Trainer

MakeConfig = Callable[..., RunConfig]


def recorded_rates(trainer: Trainer) -> list[float]:
    return [row["lr"] for row in trainer.history]


def test_each_epoch_records_the_rate_of_its_last_update(make_config: MakeConfig) -> None:
    """Per-update cosine with warm-up over 3 epochs of 8 updates: epoch e ends with update
    8e + 7, and the last rate of the run is small but not zero."""
    config = make_config(
        "train.epochs=3", "optimizer.lr=0.05", "schedule.name=cosine", "schedule.warmup=5"
    )
    trainer = Trainer(config)
    assert trainer.fit().status == "completed"
    expected = [learning_rate(config.schedule, 0.05, 8 * e + 7, 24) for e in range(3)]
    assert recorded_rates(trainer) == expected
    assert 0 < expected[-1] < 0.05 * 0.01


def test_an_epoch_schedule_changes_the_rate_once_per_epoch(make_config: MakeConfig) -> None:
    config = make_config(
        "train.epochs=3",
        "optimizer.lr=0.01",
        "schedule.name=step",
        "schedule.interval=epoch",
        "schedule.step_size=1",
        "schedule.gamma=0.5",
    )
    trainer = Trainer(config)
    seen: list[float] = []
    original = trainer.optimizer.step

    def step(*args: object, **kwargs: object) -> object:
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        return original(*args, **kwargs)

    trainer.optimizer.step = step  # type: ignore[method-assign]
    assert trainer.fit().status == "completed"
    assert seen == [0.01] * 8 + [0.005] * 8 + [0.0025] * 8
    assert recorded_rates(trainer) == [0.01, 0.005, 0.0025]


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ((), [0.01, 0.02, 0.04, 0.08]),  # the gene alone, as before schedules existed
        (
            ("schedule.name=multistep", "schedule.interval=epoch", "schedule.milestones=[2]"),
            [0.01, 0.02, 0.001 * 4, 0.001 * 8],
        ),
    ],
    ids=["constant", "multistep"],
)
def test_the_lr_gene_doubles_the_scheduled_rate(
    make_config: MakeConfig, schedule: tuple[str, ...], expected: list[float]
) -> None:
    """The schedule sets the base rate the gene scales: with s = 1 (double every epoch) the
    gene multiplies epoch e's scheduled rate by 2^e, then clips it to [1e-5, 0.1]."""
    config = make_config(
        "train.epochs=4", "optimizer.lr=0.01", "techniques.lr_schedule.s=1.0", *schedule
    )
    trainer = Trainer(config)
    assert trainer.fit().status == "completed"
    assert recorded_rates(trainer) == pytest.approx(expected, rel=1e-12)


def test_the_lr_gene_clips_the_scheduled_rate(make_config: MakeConfig) -> None:
    """Halving every epoch (s = −1) from a cosine: epoch 3 would go below the gene's lower
    bound, which holds it at 1e-5."""
    config = make_config(
        "train.epochs=4",
        "optimizer.lr=1e-4",
        "schedule.name=cosine",
        "schedule.interval=epoch",
        "techniques.lr_schedule.s=-1.0",
    )
    trainer = Trainer(config)
    assert trainer.fit().status == "completed"
    cosine = [learning_rate(config.schedule, 1e-4, e, 4) for e in range(4)]
    expected = [cosine[0], max(cosine[1] / 2, 1e-5), max(cosine[2] / 4, 1e-5), 1e-5]
    assert recorded_rates(trainer) == pytest.approx(expected, rel=1e-12)
    assert cosine[3] / 8 < 1e-5


def test_clipping_acts_after_the_gradient_techniques(make_config: MakeConfig) -> None:
    """Huge gradient noise (η = 1e4), then clipping to 1e-3: every update moves the weights by
    at most lr · 1e-3, so 8 updates move them by at most 8 · lr · 1e-3 in all. Noise added
    after the clipping would move them by about lr · 100 per weight."""
    config = make_config(
        "train.epochs=1",
        "optimizer.lr=0.1",
        "optimizer.clip_grad_norm=1e-3",
        "techniques.gradient_noise=1e4",
    )
    trainer = Trainer(config)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    assert trainer.fit().status == "completed"
    moved = torch.linalg.vector_norm(
        torch.cat(
            [
                (p.detach() - b).flatten()
                for p, b in zip(trainer.model.parameters(), before, strict=True)
            ]
        )
    )
    assert trainer.updates == 8
    assert 0 < moved <= 8 * 0.1 * 1e-3 * (1 + 1e-5)


def test_a_warm_up_as_long_as_the_run_is_refused_before_training(
    make_config: MakeConfig,
) -> None:
    with pytest.raises(
        ConfigError, match="schedule.warmup: got 16; must be less than the run's 16 updates"
    ):
        Trainer(make_config("schedule.name=cosine", "schedule.warmup=16"))
    with pytest.raises(ConfigError, match="less than the run's 2 epochs"):
        Trainer(make_config("schedule.warmup=2", "schedule.interval=epoch"))
