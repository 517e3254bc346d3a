"""Datasets: loading, the papers' train/validation/test protocol, and the dataset registry.

Importing this package registers the built-in datasets (``offline`` and ``standard``).
Heavy dependencies (scikit-learn, mnist1d) are imported only when their
dataset is first built.
"""

from __future__ import annotations

from dicelab.data import offline, standard  # noqa: F401  (registers the built-in datasets)
from dicelab.data.core import DATASETS, DataBundle, DatasetInfo, Split, to_float
from dicelab.data.loading import list_datasets, load_data

__all__ = [
    "DATASETS",
    "DataBundle",
    "DatasetInfo",
    "Split",
    "list_datasets",
    "load_data",
    "to_float",
]
