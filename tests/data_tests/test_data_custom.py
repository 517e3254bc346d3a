"""User datasets named ``module:function``."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dicelab.data import load_data
from dicelab.exceptions import ConfigError, DataError

from .conftest import global_rng_states, val_of

MODULE = "dicelab_test_custom_data"

SOURCE = """
import random

import numpy as np
import torch


def as_dict():
    x = np.arange(10 * 2 * 3, dtype=np.uint8).reshape(10, 2, 3)
    return {"x_train": x, "y_train": np.arange(10) % 3,
            "x_test": x[:4], "y_test": np.array([0, 1, 2, 4])}


def as_tuple():
    x = torch.linspace(0, 1, 12, dtype=torch.float64).reshape(6, 2)
    return x, torch.tensor([0, 1, 0, 1, 0, 1]), x[:2], torch.tensor([1, 0])


def draws_randomness():
    random.random()
    np.random.rand()
    x = torch.rand(5, 3)
    return x, torch.arange(5), x, torch.arange(5)


def three_items():
    return as_tuple()[:3]


def wrong_keys():
    data = as_dict()
    data["x_val"] = data.pop("x_test")
    return data


def mismatched_lengths():
    x, y, xt, yt = as_tuple()
    return x, y[:5], xt, yt


def float_labels():
    x, y, xt, yt = as_tuple()
    return x, y.double(), xt, yt


def negative_labels():
    x, y, xt, yt = as_tuple()
    return x, y - 1, xt, yt


def different_shapes():
    x, y, xt, yt = as_tuple()
    return x, y, xt[:, :1], yt


def integer_images():
    x, y, xt, yt = as_tuple()
    return (x * 10).long(), y, (xt * 10).long(), yt


def a_list():
    return [1, 2, 3, 4]


def raises():
    raise KeyError("no such column")


def exits():
    import sys

    sys.exit(3)


def huge_label():
    x, y, xt, yt = as_tuple()
    return x, y, xt, torch.tensor([0, 2**40])


def sparse_labels():
    x, y, xt, yt = as_tuple()
    return x, y * 1_000_000, xt, yt


def declared_classes():
    data = as_dict()
    data["num_classes"] = 7
    return data


def declared_too_few():
    data = as_dict()
    data["num_classes"] = 4
    return data


def declared_sparse():
    x, y, xt, yt = as_tuple()
    return {"x_train": x, "y_train": y * 9, "x_test": xt, "y_test": yt, "num_classes": 10}


def nan_test_set():
    x, y, xt, yt = as_tuple()
    return x, y, torch.full_like(xt, float("nan")), yt


def inf_train_set():
    x, y, xt, yt = as_tuple()
    x = x.clone()
    x[4, 1] = float("inf")
    x[5, 0] = -float("inf")
    return x, y, xt, yt


def overflows_float32():
    x, y, xt, yt = as_tuple()
    return x * 1e300, y, xt, yt


def big_endian():
    x = np.arange(12, dtype=">f8").reshape(6, 2) / 12
    return x, np.array([0, 1, 0, 1, 0, 1], dtype=">i4"), x[:2], np.array([1, 0], dtype=">i8")


def empty_examples():
    x, y, xt, yt = as_tuple()
    return x[:, :0], y, xt[:, :0], yt


def sparse_tensor():
    x, y, xt, yt = as_tuple()
    return x.to_sparse(), y, xt, yt


not_a_function = 3
"""


@pytest.fixture(autouse=True)
def custom_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)


def test_dict_of_numpy_arrays() -> None:
    bundle = load_data(f"{MODULE}:as_dict", split="final")
    assert bundle.name == f"{MODULE}:as_dict"
    assert bundle.train.x.dtype == torch.uint8 and bundle.train.x.shape == (10, 2, 3)
    assert bundle.train.y.dtype == torch.int64 and bundle.train.y.tolist()[:4] == [0, 1, 2, 0]
    assert bundle.input_shape == (2, 3)
    assert bundle.num_classes == 5  # the largest label (4, in the test set) plus one


def test_tuple_of_tensors_with_search_split() -> None:
    bundle = load_data(f"{MODULE}:as_tuple", val_fraction=0.5)
    assert bundle.train.x.dtype == torch.float32
    assert (len(bundle.train), len(val_of(bundle)), len(bundle.test)) == (3, 3, 2)
    assert bundle.num_classes == 2


def test_custom_function_cannot_move_global_rngs() -> None:
    before = global_rng_states()
    load_data(f"{MODULE}:draws_randomness", split="final")
    assert global_rng_states() == before


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("three_items", "a dict with keys x_train, y_train, x_test, y_test, or a 4-tuple"),
        ("wrong_keys", "got a dict with keys"),
        ("a_list", "torch tensor or a numeric numpy array; got int"),
        ("mismatched_lengths", "as many labels as examples; got 6 x_train and 5 y_train"),
        ("float_labels", "integer labels"),
        ("negative_labels", "non-negative labels"),
        ("different_shapes", "same per-example shape"),
        ("integer_images", "uint8 images or floats"),
        ("raises", "it raised KeyError: 'no such column'"),
        ("exits", "it exited (sys.exit(3)) instead of returning"),
        ("huge_label", "3 distinct labels up to 1099511627776"),
        ("sparse_labels", "Remap the labels to 0..K-1"),
        ("declared_too_few", "num_classes=4 and a label 4"),
        ("empty_examples", "non-empty examples"),
        ("sparse_tensor", "dense torch tensor"),
        ("not_a_function", "to define a function 'not_a_function'"),
        ("missing", "to define a function 'missing'"),
    ],
)
def test_bad_custom_datasets(function: str, expected: str) -> None:
    with pytest.raises(ConfigError, match="data.name") as info:
        load_data(f"{MODULE}:{function}")
    assert expected in str(info.value)


@pytest.mark.parametrize("name", ["no_such_module_for_dicelab:load", f"{MODULE}:", ":load"])
def test_bad_custom_names(name: str) -> None:
    with pytest.raises(ConfigError, match="data.name"):
        load_data(name)


def test_sys_exit_itself_is_reported() -> None:
    with pytest.raises(ConfigError, match="data.name") as info:
        load_data("sys:exit")
    assert "exited (sys.exit(None)) instead of returning" in str(info.value)


def test_module_that_fails_on_import(tmp_path: Path) -> None:
    (tmp_path / "dicelab_test_broken_data.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="data.name") as info:
        load_data("dicelab_test_broken_data:load")
    assert "importing it raised RuntimeError: boom" in str(info.value)


def test_declared_class_count() -> None:
    assert load_data(f"{MODULE}:declared_classes").num_classes == 7
    # Sparse labels are accepted when the class count is given explicitly.
    assert load_data(f"{MODULE}:declared_sparse", val_fraction=0.5).num_classes == 10


def test_a_few_absent_classes_are_still_accepted() -> None:
    # as_dict has labels 0, 1, 2 and 4: one class of five without an example is plausible.
    assert load_data(f"{MODULE}:as_dict").num_classes == 5


def test_big_endian_arrays() -> None:
    bundle = load_data(f"{MODULE}:big_endian", split="final")
    assert bundle.train.x.dtype == torch.float32 and bundle.train.y.tolist()[:3] == [0, 1, 0]
    assert torch.allclose(bundle.train.x.flatten(), torch.arange(12) / 12)


@pytest.mark.parametrize(
    ("function", "split", "words"),
    [
        ("nan_test_set", "search", "the test split has 4 non-finite input values"),
        ("inf_train_set", "final", "the train split has 2 non-finite input values"),
        ("inf_train_set", "search", "the validation split has 2 non-finite input values"),
        ("overflows_float32", "final", "the train split has 11 non-finite"),
    ],
)
def test_non_finite_inputs_are_a_data_error(function: str, split: str, words: str) -> None:
    with pytest.raises(DataError) as info:
        load_data(f"{MODULE}:{function}", split=split, val_fraction=0.5)
    assert str(info.value).startswith(f"{MODULE}:{function}: ")
    assert words in str(info.value)
