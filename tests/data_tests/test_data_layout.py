"""Every dataset path gives tensors in one canonical layout, so the first run in a fresh data
folder (which builds the cache) trains exactly like every later run (which reads it)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dicelab.config import load_config
from dicelab.data import DataBundle, Split, load_data
from dicelab.train import Trainer

from .conftest import FirstLoad, tiny_mnist, write_idx_files


def splits(bundle: DataBundle) -> dict[str, Split]:
    """The bundle's splits by name (validation only when there is one)."""
    named = {"train": bundle.train, "test": bundle.test}
    if bundle.val is not None:
        named["val"] = bundle.val
    return named


def layout(tensor: torch.Tensor) -> tuple[object, ...]:
    """Everything about a tensor's memory that a kernel may look at."""
    return (tensor.dtype, tuple(tensor.shape), tensor.stride(), tensor.is_contiguous())


def fresh_strides(tensor: torch.Tensor) -> tuple[int, ...]:
    """The strides of a newly allocated tensor of the same shape: the canonical layout."""
    return torch.empty(tensor.shape).stride()


def assert_canonical(bundle: DataBundle) -> None:
    for part, split in splits(bundle).items():
        for tensor in (split.x, split.y):
            assert tensor.stride() == fresh_strides(tensor), part


def assert_identical(first: DataBundle, second: DataBundle) -> None:
    """Same values and same layout, split by split."""
    a, b = splits(first), splits(second)
    assert a.keys() == b.keys()
    for part in a:
        for x, y in ((a[part].x, b[part].x), (a[part].y, b[part].y)):
            assert torch.equal(x, y), part
            assert layout(x) == layout(y), part
    assert_canonical(first)


@pytest.mark.parametrize("channel_stride", [0, 1])
def test_split_canonicalises_an_ambiguous_layout(channel_stride: int) -> None:
    # A size-1 channel dimension with stride 0 (numpy's x[:, None]) or 1 (the freshly built
    # digits after fancy indexing): torch calls such a tensor contiguous, and with stride 1
    # also channels-last, so convolutions may take another path than on the cached copy.
    values = torch.arange(5 * 8 * 8, dtype=torch.uint8).reshape(5, 8, 8)
    x = values.as_strided((5, 1, 8, 8), (64, channel_stride, 8, 1))
    assert x.is_contiguous() and x.stride() != fresh_strides(x)
    split = Split(x, torch.arange(5))
    assert split.x.stride() == (64, 64, 8, 1)
    assert torch.equal(split.x, x)


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_fresh_build_and_cache_are_identical(name: str, tmp_path: Path) -> None:
    fresh = load_data(name, root=tmp_path)
    assert (tmp_path / name / f"{name}.npz").is_file()
    assert_identical(fresh, load_data(name, root=tmp_path))


def test_mnist1d_fresh_build_and_cache_are_identical(mnist1d_first: FirstLoad) -> None:
    cached = load_data("mnist1d", root=mnist1d_first.root, split="final")
    assert_identical(mnist1d_first.bundle, cached)


def test_standard_loader_layout_is_canonical(tmp_path: Path) -> None:
    write_idx_files(tmp_path / "mnist", tiny_mnist())
    assert_canonical(load_data("mnist", root=tmp_path, val_fraction=0.25))


def test_custom_dataset_layout_is_canonical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "dicelab_test_layout_data"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent("""
        import numpy as np

        def strided():
            x = np.zeros((20, 6, 6), dtype=np.float32)[:, None]  # channel stride 1
            y = np.arange(20) % 2
            return x, y, x[:4], y[:4]
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    assert_canonical(load_data(f"{module}:strided"))


def test_first_run_in_a_fresh_data_folder_equals_the_second(tmp_path: Path) -> None:
    """The first run builds the digits cache, the second reads it: same metrics, same weights."""
    config = load_config(
        overrides=[
            "data.name=digits",
            f"data.root={tmp_path / 'data'}",
            "device=cpu",
            "model.width=8",
            "data.train_limit=128",
            "train.batch_size=32",
            "train.epochs=1",
        ]
    )
    runs = []
    for _ in range(2):
        trainer = Trainer(config)
        result = trainer.fit()
        history = [
            {k: v for k, v in row.items() if not k.endswith("time_s")} for row in trainer.history
        ]
        runs.append((result, history, trainer.model.state_dict()))
    (first, first_history, first_weights), (second, second_history, second_weights) = runs
    assert (tmp_path / "data" / "digits" / "digits.npz").is_file()
    assert first_history == second_history
    assert (first.test_acc, first.test_loss) == (second.test_acc, second.test_loss)
    assert first_weights.keys() == second_weights.keys()
    assert all(torch.equal(first_weights[k], second_weights[k]) for k in first_weights)
