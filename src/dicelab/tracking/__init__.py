"""Experiment trackers: TensorBoard, MLflow and W&B beside a run's own files.

A configuration names its trackers in ``log`` (``log: [tensorboard, mlflow]``). The trainer
then records each run folder's configuration as hyperparameters, every row of
``metrics.jsonl`` at step = epoch, and the result; ``dicelab search`` records each trial (its
genes in readable values and its score) and ``dicelab evaluate`` each retraining run. Where
the records go, by default under the folder of the run or search:

============  ==========================================================================
tensorboard   ``<run>/tensorboard/`` (a search's trials: ``<out>/tensorboard/<study>-trial-N``)
mlflow        ``<run>/mlruns/mlflow.db`` (SQLite; ``MLFLOW_TRACKING_URI`` overrides it)
wandb         ``<run>/wandb/`` (offline; ``wandb sync`` uploads it)
============  ==========================================================================

Each adapter imports its package only when a run starts; a missing one is a
:class:`~dicelab.exceptions.ConfigError` naming the extra to install
(``pip install "dicelab[tracking]"`` for TensorBoard and MLflow, ``"dicelab[wandb]"``). The
``log`` key is not part of the configuration hash, so adding or removing a tracker never
blocks a resume. A tracker that fails while a run trains costs one warning line and is
switched off; the run and its own files carry on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dicelab.tracking._base import Param, Tracker, Trackers, flat_params, numbers
from dicelab.tracking._mlflow import MLflowTracker
from dicelab.tracking._tensorboard import TensorBoardTracker
from dicelab.tracking._wandb import WandbTracker

__all__ = [
    "TRACKERS",
    "MLflowTracker",
    "Param",
    "TensorBoardTracker",
    "Tracker",
    "Trackers",
    "WandbTracker",
    "check_trackers",
    "flat_params",
    "numbers",
    "open_trackers",
]

#: Tracker name (as in the configuration's ``log`` list) → adapter class.
TRACKERS: dict[str, type[Tracker]] = {
    cls.name: cls for cls in (TensorBoardTracker, MLflowTracker, WandbTracker)
}


def check_trackers(names: Sequence[str]) -> None:
    """Raise :class:`~dicelab.exceptions.ConfigError` for a tracker whose package is missing
    (before a run starts, so a missing extra costs no training)."""
    for name in names:
        TRACKERS[name].check_installed()


def open_trackers(
    names: Sequence[str], root: str | Path, *, run: str | None = None, experiment: str = "dicelab"
) -> Trackers:
    """The trackers named in ``names``, writing under ``root``; not started yet.

    ``run`` names the run's own sub-folder when several runs share ``root`` (the trials of a
    search). Raises :class:`~dicelab.exceptions.ConfigError` for a missing package.
    """
    check_trackers(names)
    return Trackers([TRACKERS[n](Path(root), run=run, experiment=experiment) for n in names])
