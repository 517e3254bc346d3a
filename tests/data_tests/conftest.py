"""Fixtures for the data tests: tiny files in the official formats, a local HTTP mirror, and
one shared mnist1d cache (generating it takes a few seconds)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import random
import struct
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from dicelab.data import DataBundle, Split, load_data

IDX_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) in the IDX format: magic 0x0000080<ndim>, big-endian dims, payload."""
    header = struct.pack(">I", 0x800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def tiny_mnist(n_train: int = 12, n_test: int = 5) -> dict[str, np.ndarray]:
    """Random 28x28 images and labels, keyed by IDX file name."""
    rng = np.random.default_rng(1)
    return {
        IDX_NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        IDX_NAMES[1]: np.arange(n_train, dtype=np.uint8) % 10,
        IDX_NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        IDX_NAMES[3]: np.arange(n_test, dtype=np.uint8)[::-1] % 10,
    }


def write_idx_files(folder: Path, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = idx_bytes(array)
        if compress:
            (folder / name).write_bytes(gzip.compress(data))
        else:
            (folder / name.removesuffix(".gz")).write_bytes(data)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


@pytest.fixture
def http_mirror(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1, and its base URL."""
    served = tmp_path / "mirror"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Talk to the local mirror directly even where a proxy is configured."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def cifar_archive(
    path: Path, folder: str, members: dict[str, bytes], extra: dict[str, bytes] | None = None
) -> None:
    """A .tar.gz holding ``folder/<member>`` for each member (plus ``extra`` at top level)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {
            **{f"{folder}/{m}": d for m, d in members.items()},
            **(extra or {}),
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def global_rng_states() -> tuple[object, ...]:
    """Python's, NumPy's and torch's global generator states, comparable with ``==``."""
    np_state = np.random.get_state(legacy=False)
    return (
        random.getstate(),
        np_state["state"]["key"].tobytes(),
        np_state["state"]["pos"],
        np_state["has_gauss"],
        np_state["gauss"],
        torch.get_rng_state().numpy().tobytes(),
    )


def val_of(bundle: DataBundle) -> Split:
    """The validation split of a ``split="search"`` bundle."""
    assert bundle.val is not None
    return bundle.val


@dataclass(frozen=True)
class FirstLoad:
    root: Path
    bundle: DataBundle
    seconds: float
    states_before: tuple[object, ...]
    states_after: tuple[object, ...]


@pytest.fixture(scope="session")
def mnist1d_first(tmp_path_factory: pytest.TempPathFactory) -> FirstLoad:
    """The first (generating) mnist1d load into a fresh root, with the global RNG states
    compared before and after."""
    root = tmp_path_factory.mktemp("mnist1d_root")
    before = global_rng_states()
    start = time.perf_counter()
    bundle = load_data("mnist1d", root=root, split="final")
    seconds = time.perf_counter() - start
    return FirstLoad(root, bundle, seconds, before, global_rng_states())
