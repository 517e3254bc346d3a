"""Downloads: fetched from a local HTTP mirror, verified before they are put in place."""

from __future__ import annotations

import gzip
import os
import socket
from pathlib import Path

import numpy as np
import pytest

from dicelab.data import fetch, load_data
from dicelab.exceptions import DataError

from .conftest import IDX_NAMES, idx_bytes, md5, tiny_mnist, val_of, write_idx_files


def serve_mnist(
    monkeypatch: pytest.MonkeyPatch, mirror: tuple[Path, str], names: tuple[str, ...] = IDX_NAMES
) -> dict[str, np.ndarray]:
    """Put tiny IDX files on the mirror and point MIRRORS['mnist'] at them."""
    folder, base = mirror
    arrays = tiny_mnist()
    entries = []
    for name in IDX_NAMES:
        data = gzip.compress(idx_bytes(arrays[name]))
        if name in names:
            (folder / name).write_bytes(data)
        entries.append((name, base + name, md5(data)))
    monkeypatch.setitem(fetch.MIRRORS, "mnist", entries)
    return arrays


def test_download_fetches_verifies_and_loads(
    tmp_path: Path, http_mirror: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays = serve_mnist(monkeypatch, http_mirror)
    root = tmp_path / "data"
    bundle = load_data("mnist", root=root, download=True, split="final")
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(IDX_NAMES)
    umask = os.umask(0o022)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in (root / "mnist").iterdir())
    assert np.array_equal(bundle.test.x[:, 0].numpy(), arrays[IDX_NAMES[2]])
    assert np.array_equal(bundle.train.y.numpy(), arrays[IDX_NAMES[1]])


def test_download_fetches_only_missing_files(
    tmp_path: Path, http_mirror: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mirror lacks the two files already present: asking for them would fail with 404.
    arrays = serve_mnist(monkeypatch, http_mirror, names=IDX_NAMES[2:])
    root = tmp_path / "data"
    write_idx_files(root / "mnist", {n: arrays[n] for n in IDX_NAMES[:2]}, compress=False)
    bundle = load_data("mnist", root=root, download=True)
    assert len(bundle.train) + len(val_of(bundle)) == 12 and len(bundle.test) == 5


def test_checksum_mismatch_leaves_nothing(
    tmp_path: Path, http_mirror: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_mnist(monkeypatch, http_mirror)
    name, url, _ = fetch.MIRRORS["mnist"][0]
    wrong = "0" * 32
    monkeypatch.setitem(fetch.MIRRORS, "mnist", [(name, url, wrong), *fetch.MIRRORS["mnist"][1:]])
    received = md5((http_mirror[0] / name).read_bytes())
    root = tmp_path / "data"
    with pytest.raises(DataError, match="checksum mismatch") as info:
        load_data("mnist", root=root, download=True)
    message = str(info.value)
    assert name in message and wrong in message and received in message
    assert list((root / "mnist").iterdir()) == []


def test_refused_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/train-images-idx3-ubyte.gz"
    entries = [(n, f"http://127.0.0.1:{port}/{n}", "0" * 32) for n in IDX_NAMES]
    monkeypatch.setitem(fetch.MIRRORS, "mnist", entries)
    with pytest.raises(DataError, match="could not download") as info:
        load_data("mnist", root=tmp_path, download=True)
    assert url in str(info.value) and "by hand" in str(info.value)
    assert list((tmp_path / "mnist").iterdir()) == []


def test_http_error(
    tmp_path: Path, http_mirror: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_mnist(monkeypatch, http_mirror, names=())
    with pytest.raises(DataError, match="could not download .*HTTP 404"):
        load_data("mnist", root=tmp_path, download=True)


def test_present_files_need_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_idx_files(tmp_path / "mnist", tiny_mnist())
    monkeypatch.setitem(fetch.MIRRORS, "mnist", [])  # any download attempt would fail
    assert len(load_data("mnist", root=tmp_path, download=True).test) == 5


def test_unwritable_folder(
    tmp_path: Path, http_mirror: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_mnist(monkeypatch, http_mirror)
    root = tmp_path / "a-file"
    root.write_text("the data root is a file")
    with pytest.raises(DataError, match="cannot write to"):
        load_data("mnist", root=root, download=True)
