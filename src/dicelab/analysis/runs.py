"""Trained models back from run folders, for the analyses that need a model (Hessian,
landscape): the run's own configuration rebuilds the data and the network, then the final
weights are loaded. Randomness techniques are detached: the analyses study the plain model. An
input normalisation (the ``normalize`` technique) stays: the weights were trained on normalised
inputs, so the model in evaluation mode still normalises the raw batches it is given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dicelab.config import RunConfig, load_config
from dicelab.data import DataBundle, to_float
from dicelab.exceptions import RunError
from dicelab.train.trainer import CONFIG, FINAL_WEIGHTS, load_checkpoint

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class TrainedRun:
    """A finished run: its configuration, its network with the final weights, its data."""

    folder: Path
    config: RunConfig
    model: nn.Module
    data: DataBundle

    def batches(
        self, split: str = "train", *, examples: int = 1000, size: int = 500
    ) -> list[Batch]:
        """The first ``examples`` examples of a split as float batches of ``size``."""
        part = {"train": self.data.train, "test": self.data.test, "val": self.data.val}[split]
        if part is None:
            raise RunError(f"{self.folder} has no {split} split")
        count = min(examples, len(part))
        return [
            (to_float(part.x[i : min(i + size, count)]), part.y[i : min(i + size, count)])
            for i in range(0, count, size)
        ]


def load_trained(folder: str | Path) -> TrainedRun:
    """The run in ``folder`` (a completed ``dicelab train`` run folder)."""
    from dicelab.train import Trainer

    folder = Path(folder)
    weights = folder / FINAL_WEIGHTS
    if not (folder / CONFIG).is_file() or not weights.is_file():
        raise RunError(
            f"{folder} is not a finished run folder (it needs {CONFIG} and {FINAL_WEIGHTS})"
        )
    config = load_config(folder / CONFIG)
    trainer = Trainer(config)
    trainer.injector.detach(randomness_only=True)
    trainer.model.load_state_dict(load_checkpoint(weights, trainer.device))
    trainer.model.eval()
    return TrainedRun(folder, config, trainer.model, trainer.data)
