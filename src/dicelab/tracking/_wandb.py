"""Weights & Biases, offline: config, a history row per epoch and the run's summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicelab.tracking._base import Param, Tracker


class WandbTracker(Tracker):
    """Records runs with ``wandb.init(mode="offline")``: nothing leaves the machine.

    Where: ``<root>/wandb/offline-run-<time>-<id>/`` (one per run or trial); upload later with
    ``wandb sync <root>/wandb/offline-run-*``. The configuration goes to the run's config
    (dotted keys), each epoch's metrics to its history at step = epoch, and the result's
    numbers to its summary as ``result/<name>``.
    """

    name = "wandb"
    package = "wandb"
    extra = "wandb"

    def start(self, name: str, params: Mapping[str, Param]) -> None:
        import wandb

        self.root.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(
            silent=True, console="off", disable_git=True, save_code=False, x_disable_stats=True
        )
        self._run: Any = wandb.init(
            project=self.experiment,
            name=name,
            dir=str(self.root),
            config=dict(params),
            mode="offline",
            reinit="create_new",  # a search's worker records many runs in one process
            settings=settings,
        )

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._run.log(dict(metrics), step=step)

    def log_result(self, result: Mapping[str, float]) -> None:
        self._run.summary.update({f"result/{key}": value for key, value in result.items()})

    def end(self, status: str) -> None:
        self._run.summary["dicelab_status"] = status
        self._run.finish(exit_code=0 if status in ("completed", "stopped") else 1)
