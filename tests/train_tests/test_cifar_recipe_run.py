"""A CIFAR-style recipe end to end: ResNet-18 on CIFAR-10 files written in the official binary
format, SGD with Nesterov momentum and weight decay sparing biases and BatchNorm, a
per-update cosine with warm-up, random crop + flip + Cutout + normalisation (the RWP authors'
augmentation), bf16 autocast in channels_last. It trains, and a run interrupted mid-epoch
resumes to the same weights as an uninterrupted one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from dicelab.config import load_config
from dicelab.data.standard import CIFAR_LAYOUTS
from dicelab.train import Trainer
from dicelab.train.trainer import FINAL_WEIGHTS, RESULT

from .test_trainer import _interrupt_after, assert_same_weights, load_tensors

PER_BATCH_FILE, TEST = 16, 16  # 80 training images in the five data_batch files

RECIPE = [
    "data.name=cifar10",
    "data.split=final",
    "device=cpu",
    "model.name=resnet18",
    "train.epochs=2",
    "train.batch_size=32",
    "train.reduction=mean",
    "train.precision=bf16",
    "optimizer.name=momentum",
    "optimizer.lr=0.1",
    "optimizer.momentum=0.9",
    "optimizer.nesterov=true",
    "optimizer.weight_decay=5e-4",
    "optimizer.decay_exclude=[bias, norm]",
    "schedule.name=cosine",
    "schedule.warmup=2",
    "techniques.flip.mode=horizontal",
    "techniques.random_crop.padding=4",
    "techniques.normalize.preset=cifar10",
    "techniques.cutout.size=16",
]


@pytest.fixture
def cifar_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data root holding CIFAR-10's extracted binary files, tiny: records of one label byte
    and 3,072 pixel bytes."""
    layout = dataclasses.replace(
        CIFAR_LAYOUTS["cifar10"], train_records=PER_BATCH_FILE, test_records=TEST
    )
    monkeypatch.setitem(CIFAR_LAYOUTS, "cifar10", layout)
    folder = tmp_path / "data" / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in files:
        count = TEST if name == "test_batch.bin" else PER_BATCH_FILE
        labels = rng.integers(0, 10, (count, 1), dtype=np.uint8)
        pixels = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())
    return tmp_path / "data"


@pytest.mark.slow
def test_the_cifar_recipe_trains_and_resumes_exactly(
    cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(overrides=[*RECIPE, f"data.root={cifar_root}"])
    reference = Trainer(config, run_dir=tmp_path / "a")
    assert reference.channels_last and len(reference.data.train) == 80
    result = reference.fit()
    assert result.status == "completed"
    lrs = [row["lr"] for row in reference.history]
    assert lrs[0] > lrs[1] > 0  # the cosine anneals over the run

    run = tmp_path / "b"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 3 + 1)  # one update into the second epoch (3 batches each)
        with pytest.raises(KeyboardInterrupt):
            Trainer(config, run_dir=run).fit()
    assert not (run / RESULT).exists()
    resumed = Trainer(config, run_dir=run).fit(resume=True)
    assert resumed.test_acc == result.test_acc
    assert_same_weights(
        load_tensors(run / FINAL_WEIGHTS), load_tensors(tmp_path / "a" / FINAL_WEIGHTS)
    )
    conv = next(m for m in reference.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
