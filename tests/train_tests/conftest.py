"""Fixtures for the trainer tests: one digits data root per session, one torch thread per test,
and small configurations that train in a fraction of a second."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from dicelab.config import RunConfig, load_config

REPO_DATA = Path(__file__).resolve().parents[2] / "data"

#: Small settings shared by every trainer test: 256 digits, 8 updates per epoch, a narrow VGG.
SMALL = (
    "data.name=digits",
    "device=cpu",
    "model.width=8",
    "data.train_limit=256",
    "train.batch_size=32",
    "train.epochs=2",
)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding the digits cache (copied from the repository's when it has one)."""
    root = tmp_path_factory.mktemp("data")
    cached = REPO_DATA / "digits" / "digits.npz"
    if cached.is_file():
        (root / "digits").mkdir()
        shutil.copyfile(cached, root / "digits" / "digits.npz")
    return root


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread per test: two xdist workers on two cores must not oversubscribe them
    (that slows small CPU runs by orders of magnitude), and results depend on the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_config(data_root: Path) -> Callable[..., RunConfig]:
    """``make_config(*overrides)``: the small configuration with ``overrides`` applied last."""

    def make(*overrides: str) -> RunConfig:
        return load_config(None, [*SMALL, f"data.root={data_root}", *overrides])

    return make
