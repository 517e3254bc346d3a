"""User datasets named ``module:function``."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dicelab.data import load_data
from dicelab.exceptions import ConfigError

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
