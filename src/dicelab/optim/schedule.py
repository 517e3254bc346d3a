"""Learning-rate schedules (the ``schedule:`` section): the rate as a pure function of the
interval index.

A schedule maps interval ``i`` of a run of ``n`` intervals to a rate, from the base rate
``lr`` (``optimizer.lr``); an interval is one optimizer update (``interval: step``, the default)
or one epoch (``interval: epoch``). With ``W = warmup``:

    i < W (warm-up)   lr · (i + 1) / W                      rises linearly, reaching lr at W − 1
    constant          lr
    cosine            min_lr + (lr − min_lr) · (1 + cos(j / m · π)) / 2,   j = i − W, m = n − W
    step              lr · gamma^(i // step_size)
    multistep         lr · gamma^(number of milestones <= i)

The cosine anneals from ``lr`` at the end of the warm-up to ``min_lr`` at the end of the run
(index ``n``, one past the last update, as in the authors' code, so the last update's rate is
small but not ``min_lr``). Step and multistep count from the start of the run, warm-up
included, as ``torch.optim.lr_scheduler.StepLR``/``MultiStepLR`` do.

The cosine is the RWP authors' (arXiv 2404.00357): ``nblt/mARWP`` ``train_rwp_cos.py`` (commit
f12df73) L161–177, ``_cosine_annealing(step, total_steps, lr_max, lr_min)`` =
``lr_min + (lr_max − lr_min) · 0.5 · (1 + cos(step / total_steps · π))`` wrapped in a
``LambdaLR`` with ``lr_min = 0`` and ``total_steps = epochs · len(train_loader)``, stepped after
every iteration in ``train()``; with ``warmup: 0, min_lr: 0`` these are the same floats (the
test compares them with ``==``). Their m-ARWP script ``train_marwp.py`` instead steps
``CosineAnnealingLR(T_max=epochs)`` once per epoch: ``interval: epoch`` gives that schedule.

Because the rate depends on nothing but the index (no scheduler state), a resumed run gets
exactly the rates of an uninterrupted one. The trainer sets it before every batch, then lets
the ``lr_schedule`` technique (paper 1's gene) double or halve it for the epoch: the schedule
sets the base rate the gene scales (:meth:`dicelab.techniques.Injector.learning_rate`).
"""

from __future__ import annotations

import bisect
import math

from dicelab.config import ScheduleConfig
from dicelab.exceptions import ConfigError


def check_schedule(config: ScheduleConfig) -> None:
    """Refuse a schedule whose name needs an option the configuration leaves out."""
    if config.name == "step" and config.step_size is None:
        raise ConfigError(
            "schedule.step_size", None, "must be an integer >= 1 under schedule.name=step"
        )
    if config.name == "multistep" and not config.milestones:
        raise ConfigError(
            "schedule.milestones",
            [],
            "must list at least one interval under schedule.name=multistep, e.g. [100, 150]",
        )


def run_length(config: ScheduleConfig, *, updates: int, epochs: int) -> int:
    """Intervals in a run of ``updates`` optimizer updates over ``epochs`` epochs, in the unit
    of ``config.interval``; a warm-up that does not end before the run raises ConfigError."""
    length, unit = (updates, "updates") if config.interval == "step" else (epochs, "epochs")
    if config.warmup >= length:
        raise ConfigError(
            "schedule.warmup",
            config.warmup,
            f"must be less than the run's {length} {unit} (schedule.interval={config.interval})",
        )
    return length


def learning_rate(config: ScheduleConfig, lr: float, index: int, length: int) -> float:
    """The rate of interval ``index`` (0-based) of a run of ``length`` intervals, from ``lr``.

    ``constant`` without warm-up returns ``lr`` itself, so a run without a schedule takes
    exactly the steps it took before schedules existed.

    Example:
        >>> config = ScheduleConfig(name="cosine", warmup=2)
        >>> [round(learning_rate(config, 0.1, i, 6), 4) for i in range(6)]
        [0.05, 0.1, 0.1, 0.0854, 0.05, 0.0146]
    """
    warmup = config.warmup
    if index < warmup:
        return lr * (index + 1) / warmup
    if config.name == "cosine":
        span = length - warmup
        done = min(index - warmup, span)
        return config.min_lr + (lr - config.min_lr) * 0.5 * (1 + math.cos(done / span * math.pi))
    if config.name == "step":
        assert config.step_size is not None  # check_schedule
        return lr * config.gamma ** (index // config.step_size)
    if config.name == "multistep":
        return lr * config.gamma ** bisect.bisect_right(config.milestones, index)
    return lr
