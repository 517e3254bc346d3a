"""``load_data``: a dataset, split the way the papers' protocol splits it."""

from __future__ import annotations

from pathlib import Path

import torch

from dicelab.data.core import DATASETS, DataBundle, DatasetInfo, Split, tail_start
from dicelab.data.custom import load_custom
from dicelab.exceptions import ConfigError, DataError

SPLITS = ("search", "final")


def load_data(
    name: str,
    *,
    root: str | Path = "data",
    download: bool = False,
    split: str = "search",
    val_fraction: float = 0.2,
    train_limit: int | None = None,
) -> DataBundle:
    """Load a dataset and split it for one run.

    The protocol follows the papers' code: ``split="search"`` (for choosing hyperparameters)
    trains on the first ``1 - val_fraction`` of the official training set and validates on
    the rest, in the published order with no shuffle; ``split="final"`` trains on the whole
    official training set and has no validation set. The test set is always the official one.

    Args:
        name: a registered dataset (:func:`list_datasets`) or ``"package.module:function"``.
        root: folder with one subfolder per dataset for files and caches.
        download: fetch missing standard files from the official mirrors.
        split: ``"search"`` or ``"final"``.
        val_fraction: share of the official training set held out under ``"search"``;
            the validation part has ``round(n * val_fraction)`` examples.
        train_limit: keep only the first this-many examples of the training part (after the
            split), for quick runs.

    Raises:
        ConfigError: an option is out of range; ``UnknownNameError`` for an unknown name.
        DataError: the dataset's files are missing, corrupted or cannot be downloaded, or a
            split's inputs hold NaN or infinite values.
    """
    _check_options(name, split, val_fraction, train_limit)
    if ":" in name:
        raw = load_custom(name)
    else:
        raw = DATASETS.get(name).loader(Path(root).expanduser(), download)
    train, val = raw.train, None
    if split == "search":
        cut = tail_start(len(train), val_fraction)
        if cut == 0 or cut == len(train):
            raise ConfigError(
                "data.val_fraction",
                val_fraction,
                f"must leave examples on both sides of the split of {len(train)} training "
                "examples",
            )
        train, val = _rows(train, 0, cut), _rows(train, cut, len(train))
    if train_limit is not None:
        train = _rows(train, 0, train_limit)
    for part, rows in (("train", train), ("validation", val), ("test", raw.test)):
        if rows is not None:
            _check_finite(name, part, rows)
    return DataBundle(
        name=name,
        train=train,
        val=val,
        test=raw.test,
        num_classes=raw.num_classes,
        input_shape=tuple(raw.train.x.shape[1:]),
    )


def list_datasets() -> list[DatasetInfo]:
    """Every registered dataset, sorted by name."""
    return [DATASETS.get(name) for name in DATASETS.names()]


def _check_options(name: str, split: str, val_fraction: float, train_limit: int | None) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError("data.name", name, "expected a dataset name or 'module:function'")
    if split not in SPLITS:
        raise ConfigError("data.split", split, "expected 'search' or 'final'")
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float))
        or not (0 < val_fraction < 1)
    ):
        raise ConfigError("data.val_fraction", val_fraction, "expected a number in (0, 1)")
    if train_limit is not None and (
        isinstance(train_limit, bool) or not isinstance(train_limit, int) or train_limit < 1
    ):
        raise ConfigError("data.train_limit", train_limit, "expected an integer >= 1 or null")


def _check_finite(name: str, part: str, split: Split) -> None:
    """Refuse NaN or infinite inputs, which would otherwise pass for a diverged run (training)
    or a completed one with a meaningless score (test). ``uint8`` images are always finite."""
    x = split.x
    if not x.is_floating_point() or bool(torch.isfinite(x).all()):
        return
    bad = int(x.numel() - torch.isfinite(x).sum())
    raise DataError(
        f"{name}: the {part} split has {bad} non-finite input value{'s' if bad != 1 else ''} "
        f"(NaN or infinity as float32) among {x.numel()}; inputs must be finite numbers. Clean "
        "or drop those examples."
    )


def _rows(split: Split, start: int, stop: int) -> Split:
    return Split(split.x[start:stop], split.y[start:stop])
