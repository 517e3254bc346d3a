"""Fixtures for the trainer tests: small configurations that train in a fraction of a second."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dicelab.config import RunConfig, load_config

#: Small settings shared by every trainer test: 256 digits, 8 updates per epoch, a narrow VGG.
SMALL = (
    "data.name=digits",
    "device=cpu",
    "model.width=8",
    "data.train_limit=256",
    "train.batch_size=32",
    "train.epochs=2",
)


@pytest.fixture
def make_config(data_root: Path) -> Callable[..., RunConfig]:
    """``make_config(*overrides)``: the small configuration with ``overrides`` applied last."""

    def make(*overrides: str) -> RunConfig:
        return load_config(None, [*SMALL, f"data.root={data_root}", *overrides])

    return make
