"""TensorBoard: scalars per epoch and the run's hyperparameters (the HParams dashboard)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicelab.tracking._base import Param, Tracker


class TensorBoardTracker(Tracker):
    """Writes TensorBoard event files with ``torch.utils.tensorboard.SummaryWriter``.

    Where: ``<root>/tensorboard/`` for a run folder, ``<root>/tensorboard/<run>/`` for each
    trial of a search, so ``tensorboard --logdir <root>`` shows them side by side. Each epoch's
    metrics are scalars at step = epoch under their ``metrics.jsonl`` names (``train_loss``,
    ``val_acc``, ``lr``, ...); the result's numbers are scalars ``result/<name>`` and, with the
    hyperparameters, one session of the HParams dashboard.
    """

    name = "tensorboard"
    package = "tensorboard"
    extra = "tracking"

    def start(self, name: str, params: Mapping[str, Param]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = self.root / "tensorboard"
        if self.run is not None:
            folder = folder / self.run
        self._writer: Any = SummaryWriter(log_dir=str(folder))
        self._params = dict(params)
        self._step = 0

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, step)
        self._step = step
        self._writer.flush()  # an epoch is long; a reader sees it at once, a kill loses none

    def log_result(self, result: Mapping[str, float]) -> None:
        from torch.utils.tensorboard.summary import hparams

        final = {f"result/{key}": value for key, value in result.items()}
        # The HParams plugin pairs the hyperparameters with scalars of the same run folder:
        # write the summaries into this writer's own event file (add_hparams would make a
        # sub-folder per call).
        writer = self._writer._get_file_writer()
        for summary in hparams(self._params, final):
            writer.add_summary(summary)
        for key, value in final.items():
            self._writer.add_scalar(key, value, self._step)
        self._writer.flush()

    def end(self, status: str) -> None:
        self._writer.add_text("status", status, self._step)
        self._writer.close()
