"""CIFAR binary distributions: archive or extracted folder, strict record validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from dicelab.data import load_data
from dicelab.data.standard import CIFAR_LAYOUTS
from dicelab.exceptions import DataError

from .conftest import cifar_archive, val_of

TRAIN, TEST = 3, 2


@pytest.fixture(autouse=True)
def _tiny_layouts(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("cifar10", "cifar100"):
        layout = dataclasses.replace(CIFAR_LAYOUTS[name], train_records=TRAIN, test_records=TEST)
        monkeypatch.setitem(CIFAR_LAYOUTS, name, layout)


def records(labels: list[list[int]], seed: int) -> tuple[bytes, np.ndarray]:
    """Records of label byte(s) then 3072 random pixels; the pixels as (N, 3, 32, 32)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    rows = np.concatenate([np.array(labels, dtype=np.uint8), pixels], axis=1)
    return rows.tobytes(), pixels.reshape(-1, 3, 32, 32)


def cifar10_members() -> tuple[dict[str, bytes], np.ndarray, np.ndarray]:
    members, images, labels = {}, [], []
    for i in range(1, 6):
        batch_labels = [[(i + j) % 10] for j in range(TRAIN)]
        members[f"data_batch_{i}.bin"], pixels = records(batch_labels, seed=i)
        images.append(pixels)
        labels += [label for (label,) in batch_labels]
    members["test_batch.bin"], _ = records([[9], [0]], seed=0)
    return members, np.concatenate(images), np.array(labels)


def test_cifar10_archive(tmp_path: Path) -> None:
    members, images, labels = cifar10_members()
    (tmp_path / "cifar10").mkdir()
    cifar_archive(
        tmp_path / "cifar10" / "cifar-10-binary.tar.gz",
        "cifar-10-batches-bin",
        members,
        extra={"cifar-10-batches-bin/batches.meta.txt": b"airplane\n", "../outside": b"x"},
    )
    bundle = load_data("cifar10", root=tmp_path, split="final")
    assert bundle.train.x.shape == (15, 3, 32, 32) and bundle.train.x.dtype == torch.uint8
    assert np.array_equal(bundle.train.x.numpy(), images)
    assert bundle.train.y.tolist() == labels.tolist()
    assert bundle.test.y.tolist() == [9, 0]
    assert bundle.num_classes == 10 and bundle.input_shape == (3, 32, 32)
    assert sorted(p.name for p in (tmp_path / "cifar10").iterdir()) == ["cifar-10-binary.tar.gz"]


def test_cifar10_extracted_folder(tmp_path: Path) -> None:
    members, images, _ = cifar10_members()
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, data in members.items():
        (folder / name).write_bytes(data)
    bundle = load_data("cifar10", root=tmp_path)
    assert np.array_equal(torch.cat([bundle.train.x, val_of(bundle).x]).numpy(), images)


def test_cifar100_uses_the_fine_label(tmp_path: Path) -> None:
    train, train_pixels = records([[1, 99], [2, 50], [19, 0]], seed=1)
    test, _ = records([[3, 7], [4, 8]], seed=2)
    (tmp_path / "cifar100").mkdir()
    cifar_archive(
        tmp_path / "cifar100" / "cifar-100-binary.tar.gz",
        "cifar-100-binary",
        {"train.bin": train, "test.bin": test},
    )
    bundle = load_data("cifar100", root=tmp_path, split="final")
    assert bundle.train.y.tolist() == [99, 50, 0] and bundle.test.y.tolist() == [7, 8]
    assert np.array_equal(bundle.train.x.numpy(), train_pixels)
    assert bundle.num_classes == 100


def test_truncated_record(tmp_path: Path) -> None:
    members, _, _ = cifar10_members()
    members["data_batch_3.bin"] = members["data_batch_3.bin"][:-5]
    (tmp_path / "cifar10").mkdir()
    cifar_archive(tmp_path / "cifar10" / "cifar-10-binary.tar.gz", "cifar-10-batches-bin", members)
    with pytest.raises(DataError, match="not a whole number of 3073-byte records") as info:
        load_data("cifar10", root=tmp_path)
    assert "data_batch_3.bin" in str(info.value)


def test_wrong_record_count(tmp_path: Path) -> None:
    members, _, _ = cifar10_members()
    members["test_batch.bin"] = members["test_batch.bin"][:3073]
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, data in members.items():
        (folder / name).write_bytes(data)
    with pytest.raises(DataError, match="1 records, expected 2"):
        load_data("cifar10", root=tmp_path)


def test_missing_member(tmp_path: Path) -> None:
    members, _, _ = cifar10_members()
    del members["data_batch_5.bin"]
    (tmp_path / "cifar10").mkdir()
    cifar_archive(tmp_path / "cifar10" / "cifar-10-binary.tar.gz", "cifar-10-batches-bin", members)
    with pytest.raises(DataError, match="cifar-10-batches-bin/data_batch_5.bin not found"):
        load_data("cifar10", root=tmp_path)


def test_truncated_archive(tmp_path: Path) -> None:
    members, _, _ = cifar10_members()
    archive = tmp_path / "cifar10" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir()
    cifar_archive(archive, "cifar-10-batches-bin", members)
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(DataError, match="truncated or corrupted") as info:
        load_data("cifar10", root=tmp_path)
    assert "cifar-10-binary.tar.gz" in str(info.value)


def test_missing_archive(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_data("cifar100", root=tmp_path)
    message = str(info.value)
    assert "cifar-100-binary.tar.gz" in message and "cifar-100-binary/" in message
    assert "--set data.download=true" in message and "https://www.cs.toronto.edu/~kriz/" in message
