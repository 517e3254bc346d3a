"""The split protocol, option checks, containers and global-RNG isolation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dicelab.data import DATASETS, DataBundle, Split, list_datasets, load_data, to_float
from dicelab.exceptions import ConfigError, UnknownNameError

from .conftest import global_rng_states, tiny_mnist, val_of, write_idx_files


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("protocol_root")
    write_idx_files(root / "mnist", tiny_mnist(n_train=12, n_test=5))
    return root


@pytest.mark.parametrize("name", ["digits", "mnist"])
def test_search_is_first_and_last_part_of_official_train(name: str, root: Path) -> None:
    official = DATASETS.get(name).loader(root, False)
    bundle = load_data(name, root=root)
    cut = len(official.train) - round(len(official.train) * 0.2)
    assert torch.equal(bundle.train.x, official.train.x[:cut])
    assert torch.equal(val_of(bundle).y, official.train.y[cut:])
    assert torch.equal(bundle.test.x, official.test.x)
    assert len(bundle.train) + len(val_of(bundle)) == len(official.train)


def test_final_uses_all_of_official_train(root: Path) -> None:
    official = DATASETS.get("digits").loader(root, False)
    bundle = load_data("digits", root=root, split="final", val_fraction=0.5)
    assert bundle.val is None
    assert torch.equal(bundle.train.x, official.train.x)
    assert torch.equal(bundle.test.y, official.test.y)


def test_val_fraction(root: Path) -> None:
    bundle = load_data("mnist", root=root, val_fraction=0.25)
    assert (len(bundle.train), len(val_of(bundle))) == (9, 3)


@pytest.mark.parametrize(
    ("split", "limit", "size"), [("search", 4, 4), ("final", 7, 7), ("search", 100, 10)]
)
def test_train_limit_keeps_the_first_examples(
    root: Path, split: str, limit: int, size: int
) -> None:
    full = load_data("mnist", root=root, split=split)
    limited = load_data("mnist", root=root, split=split, train_limit=limit)
    assert torch.equal(limited.train.x, full.train.x[:size])
    assert torch.equal(limited.test.x, full.test.x)
    if split == "search":
        assert torch.equal(val_of(limited).y, val_of(full).y)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"split": "test"}, "data.split"),
        ({"val_fraction": 0}, "data.val_fraction"),
        ({"val_fraction": 1.0}, "data.val_fraction"),
        ({"val_fraction": -0.1}, "data.val_fraction"),
        ({"val_fraction": float("nan")}, "data.val_fraction"),
        ({"val_fraction": True}, "data.val_fraction"),
        ({"val_fraction": "0.2"}, "data.val_fraction"),
        ({"val_fraction": 0.01}, "data.val_fraction"),  # rounds to an empty validation set
        ({"train_limit": 0}, "data.train_limit"),
        ({"train_limit": 2.5}, "data.train_limit"),
        ({"train_limit": True}, "data.train_limit"),
    ],
)
def test_bad_options(root: Path, options: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_data("mnist", root=root, **options)  # type: ignore[arg-type]
    assert info.value.field == field


def test_unknown_name_suggests() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'mnist'") as info:
        load_data("mnsit")
    assert info.value.field == "data.name"


def test_list_datasets() -> None:
    infos = list_datasets()
    assert [i.name for i in infos] == [
        "cifar10",
        "cifar100",
        "digits",
        "fashion-mnist",
        "mnist",
        "mnist1d",
        "mnist5k",
    ]
    assert all(i.description and "\n" not in i.description for i in infos)


def test_to_float() -> None:
    x = torch.tensor([0, 1, 128, 255], dtype=torch.uint8)
    assert torch.equal(to_float(x), x.to(torch.float32) / 255)
    assert to_float(x).dtype == torch.float32
    signal = torch.tensor([-1.5, 2.0])
    assert to_float(signal) is signal
    assert to_float(signal.double()).dtype == torch.float32
    with pytest.raises(TypeError):
        to_float(torch.tensor([1, 2]))


def test_split_and_bundle_to_device() -> None:
    split = Split(torch.zeros(3, 1, 2, dtype=torch.uint8), torch.arange(3))
    assert len(split) == 3
    moved = split.to("meta")
    assert moved.x.device.type == "meta" and moved.y.device.type == "meta"
    bundle = DataBundle("toy", split, None, split, 3, (1, 2)).to("meta")
    assert bundle.val is None and bundle.test.x.device.type == "meta"
    assert bundle.name == "toy" and bundle.input_shape == (1, 2)
    with pytest.raises(ValueError, match="one label per example"):
        Split(torch.zeros(3, 2), torch.arange(2))


@pytest.mark.parametrize("name", ["digits", "mnist5k", "mnist"])
def test_loads_leave_global_rngs_alone(name: str, tmp_path: Path, root: Path) -> None:
    write_idx_files(tmp_path / "mnist", tiny_mnist())  # fresh root: builds caches too
    for where in (tmp_path, root):
        before = global_rng_states()
        load_data(name, root=where)
        assert global_rng_states() == before
