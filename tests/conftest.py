"""Fixtures for every test: one torch thread per test and a shared digits data root."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

pytest.register_assert_rewrite("dicelab.testing.contract")

REPO_DATA = Path(__file__).resolve().parents[1] / "data"


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
    (that slows small CPU runs by orders of magnitude), and results depend on the count.
    ``--threads`` changes the count process-wide; this restores it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
