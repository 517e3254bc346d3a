"""Fixtures for the tracker tests: tiny runs (64 digits, the fc model, 2 epochs, CPU)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dicelab.config import RunConfig, load_config

TINY = (
    "data.name=digits",
    "device=cpu",
    "model.name=fc",
    "data.train_limit=64",
    "train.batch_size=32",
    "train.epochs=2",
)


@pytest.fixture(autouse=True)
def _local_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracking server set in the environment would take the runs away from the folder."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def tiny(data_root: Path) -> Callable[..., RunConfig]:
    """``tiny(*overrides)``: the tiny configuration with ``overrides`` applied last."""

    def make(*overrides: str) -> RunConfig:
        return load_config(None, [*TINY, f"data.root={data_root}", *overrides])

    return make


def metrics_rows(run: Path) -> list[dict[str, Any]]:
    """The rows of a run folder's ``metrics.jsonl``."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
