"""Training: the reference trainer and what a run reports."""

from dicelab.train.trainer import RunResult, Trainer, resolve_device

__all__ = ["RunResult", "Trainer", "resolve_device"]
