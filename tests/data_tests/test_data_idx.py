"""MNIST-format IDX files: parsing, validation and the missing-files message."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from dicelab.data import load_data
from dicelab.exceptions import DataError

from .conftest import IDX_NAMES, idx_bytes, tiny_mnist, val_of, write_idx_files


@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    arrays = tiny_mnist()
    write_idx_files(tmp_path / "mnist", arrays, compress=compress)
    bundle = load_data("mnist", root=tmp_path, split="final")
    assert bundle.train.x.shape == (12, 1, 28, 28) and bundle.train.x.dtype == torch.uint8
    assert bundle.test.x.shape == (5, 1, 28, 28) and bundle.test.y.dtype == torch.int64
    assert np.array_equal(bundle.train.x[:, 0].numpy(), arrays[IDX_NAMES[0]])
    assert np.array_equal(bundle.train.y.numpy(), arrays[IDX_NAMES[1]])
    assert np.array_equal(bundle.test.x[:, 0].numpy(), arrays[IDX_NAMES[2]])
    assert np.array_equal(bundle.test.y.numpy(), arrays[IDX_NAMES[3]])
    assert bundle.num_classes == 10 and bundle.input_shape == (1, 28, 28)


def test_fashion_mnist_reads_its_own_folder(tmp_path: Path) -> None:
    write_idx_files(tmp_path / "fashion-mnist", tiny_mnist(n_train=10))
    bundle = load_data("fashion-mnist", root=tmp_path)
    assert (len(bundle.train), len(val_of(bundle)), len(bundle.test)) == (8, 2, 5)
    assert bundle.name == "fashion-mnist"


def test_truncated_payload(tmp_path: Path) -> None:
    write_idx_files(tmp_path / "mnist", tiny_mnist())
    path = tmp_path / "mnist" / IDX_NAMES[0]
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(DataError, match="truncated") as info:
        load_data("mnist", root=tmp_path)
    assert IDX_NAMES[0] in str(info.value) and "payload" in str(info.value)


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    write_idx_files(tmp_path / "mnist", tiny_mnist())
    path = tmp_path / "mnist" / IDX_NAMES[2]
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match="decompress") as info:
        load_data("mnist", root=tmp_path)
    assert IDX_NAMES[2] in str(info.value) and "truncated" in str(info.value)


def test_wrong_magic_number(tmp_path: Path) -> None:
    write_idx_files(tmp_path / "mnist", tiny_mnist())
    # A label file where the images belong.
    (tmp_path / "mnist" / IDX_NAMES[0]).write_bytes(
        gzip.compress(idx_bytes(np.zeros(12, np.uint8)))
    )
    with pytest.raises(DataError, match="magic number 0x00000801, expected 0x00000803") as info:
        load_data("mnist", root=tmp_path)
    assert IDX_NAMES[0] in str(info.value)


def test_count_mismatch_between_images_and_labels(tmp_path: Path) -> None:
    arrays = tiny_mnist()
    arrays[IDX_NAMES[1]] = arrays[IDX_NAMES[1]][:11]
    write_idx_files(tmp_path / "mnist", arrays)
    with pytest.raises(DataError, match="12 images but .* 11 labels"):
        load_data("mnist", root=tmp_path)


def test_wrong_image_size_and_label_range(tmp_path: Path) -> None:
    arrays = tiny_mnist()
    arrays[IDX_NAMES[2]] = np.zeros((5, 8, 8), np.uint8)
    write_idx_files(tmp_path / "mnist", arrays)
    with pytest.raises(DataError, match="8x8, expected 28x28"):
        load_data("mnist", root=tmp_path)
    arrays = tiny_mnist()
    arrays[IDX_NAMES[3]][0] = 10
    write_idx_files(tmp_path / "mnist", arrays)
    with pytest.raises(DataError, match="label 10 found"):
        load_data("mnist", root=tmp_path)


def test_missing_files_are_all_named(tmp_path: Path) -> None:
    write_idx_files(tmp_path / "mnist", tiny_mnist())
    (tmp_path / "mnist" / IDX_NAMES[0]).unlink()
    (tmp_path / "mnist" / IDX_NAMES[3]).unlink()
    with pytest.raises(DataError) as info:
        load_data("mnist", root=tmp_path)
    message = str(info.value)
    assert IDX_NAMES[0] in message and IDX_NAMES[3] in message
    assert IDX_NAMES[1] not in message and IDX_NAMES[2] not in message
    assert str((tmp_path / "mnist").absolute()) in message
    assert "--set data.download=true" in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in message


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_data("fashion-mnist", root=tmp_path)
    assert all(name in str(info.value) for name in IDX_NAMES)
    assert "fashion-mnist.s3-website.eu-central-1.amazonaws.com" in str(info.value)
    assert not (tmp_path / "fashion-mnist").exists()
