"""Paper 1's recipes: the full protocol per benchmark, its dry-run, and the whole pipeline run
for one epoch on synthetic CIFAR-10 files with a tiny model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from dicelab.data.standard import CIFAR_LAYOUTS
from dicelab.reproduce import _common, paper1
from dicelab.reproduce.paper1 import PAPER1_FULL, PAPER1_SCALES, Paper1, dry_run

#: The authors' final epochs per benchmark (epochs_test of VGG MNIST.ipynb and the Fashion
#: notebook; the CIFAR logs).
AUTHORS_FINAL_EPOCHS = {"mnist": 50, "fashion-mnist": 100, "cifar10": 100, "cifar100": 200}


def test_full_recipes_follow_the_authors_protocol() -> None:
    assert set(PAPER1_FULL) == set(AUTHORS_FINAL_EPOCHS)
    for name, recipe in PAPER1_FULL.items():
        config = recipe.config()
        assert config.data.name == name and config.data.download
        assert config.model.name == "vgg" and config.train.epochs == 20
        assert (recipe.particles, recipe.generations, recipe.patience) == (22, 200, 3)
        assert (recipe.screen, recipe.repeats, recipe.ablate_repeats) == (100, 5, 5)
        assert recipe.eval_epochs == AUTHORS_FINAL_EPOCHS[name]
        assert recipe.faithful and config.model.batchnorm == "keras"
    assert PAPER1_SCALES["full"] is PAPER1_FULL["cifar10"]


def test_cpu_benchmark_runs_on_mnist1d_with_the_1d_cnn() -> None:
    config = PAPER1_SCALES["cpu"].config()
    assert (config.data.name, config.model.name) == ("mnist1d", "cnn1d")
    smoke = PAPER1_SCALES["smoke"]
    assert smoke.particles * smoke.generations <= 30 and smoke.screen == 0


@pytest.mark.parametrize(
    "recipe", [*PAPER1_SCALES.values(), *PAPER1_FULL.values()], ids=[*PAPER1_SCALES, *PAPER1_FULL]
)
def test_dry_run_prints_the_recipes_settings(
    recipe: Paper1, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # anything written or downloaded would land here
    text = dry_run(recipe)
    config = recipe.config()
    assert f"data: {config.data.name}" in text and f"model: {config.model.name}" in text
    assert f"BatchNorm preset {config.model.batchnorm}" in text
    assert f"{recipe.particles} particles" in text
    assert f"at most {recipe.generations} generations x {config.train.epochs} epochs" in text
    assert (f"stop after {recipe.patience} generations" in text) == (recipe.patience is not None)
    assert (f"screening first: {recipe.screen} particles x 1 epoch" in text) == bool(recipe.screen)
    seeds = f"({config.seed}..{config.seed + recipe.repeats - 1})"
    assert f"{recipe.repeats} seeds {seeds} x {recipe.eval_epochs} epochs" in text
    assert f"x {recipe.ablate_repeats} seeds x {recipe.eval_epochs} epochs" in text
    rescaled = f"rescaled from {config.train.epochs} to {recipe.eval_epochs} epochs"
    assert (rescaled in text) == (recipe.eval_epochs != config.train.epochs)
    images = paper1.protocol_images(
        recipe, paper1.TRAIN_IMAGES[config.data.name], config.train.epochs, 0.2
    )
    assert f"at most: {sum(images.values()):,} (" in text
    assert list(tmp_path.iterdir()) == []


def test_protocol_images_sum_every_training_run() -> None:
    recipe = PAPER1_FULL["mnist"]
    images = paper1.protocol_images(recipe, 60_000, 20, 0.2)
    assert images == {
        "screening": 100 * 48_000,
        "search": 22 * 200 * 20 * 48_000,
        "evaluation": 2 * 5 * 50 * 60_000,
        "ablation": 28 * 5 * 50 * 60_000,
    }


def test_dry_run_cost_comes_from_measured_throughput(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {
        "model": "vgg",
        "dataset": "cifar100",
        "device": "Test GPU",
        "img_per_s": 10_000.0,
        "measured": "2026-12-01",
        "batch_size": 256,
        "precision": "bf16",
    }
    monkeypatch.setattr(_common, "measured_throughput", lambda: [entry])
    recipe = PAPER1_FULL["cifar100"]
    images = sum(paper1.protocol_images(recipe, 50_000, 20, 0.2).values())
    text = dry_run(recipe)
    assert f"{images / 10_000 / 3600:,.1f} h on Test GPU at 10,000 img/s" in text
    assert "not measured for vgg on cifar10" in dry_run(PAPER1_FULL["cifar10"])


# -- the whole pipeline on synthetic CIFAR-10 files ----------------------------------------

TRAIN_PER_BATCH, TEST = 24, 20


def _write_cifar10(root: Path) -> None:
    """The official binary layout (``cifar-10-batches-bin/data_batch_{1..5}.bin``,
    ``test_batch.bin``): records of one label byte and 3072 pixel bytes."""
    folder = root / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, count in [
        *((f"data_batch_{i}.bin", TRAIN_PER_BATCH) for i in range(1, 6)),
        ("test_batch.bin", TEST),
    ]:
        labels = rng.integers(0, 10, (count, 1), dtype=np.uint8)
        pixels = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())


def test_full_pipeline_runs_end_to_end_on_synthetic_cifar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = dataclasses.replace(
        CIFAR_LAYOUTS["cifar10"], train_records=TRAIN_PER_BATCH, test_records=TEST
    )
    monkeypatch.setitem(CIFAR_LAYOUTS, "cifar10", layout)
    _write_cifar10(tmp_path / "data")
    full = PAPER1_FULL["cifar10"]
    tiny = dataclasses.replace(
        full,
        settings=(
            *full.settings,
            "data.download=false",
            f"data.root={tmp_path / 'data'}",
            "model.width=4",
            "train.epochs=1",
            "device=cpu",
        ),
        particles=2,
        generations=1,
        screen=3,
        eval_epochs=2,
        repeats=2,
        ablate_repeats=1,
    )
    lines: list[str] = []
    report = paper1.run(tiny, tmp_path / "out", 1, None, 0, lines.append)
    assert report.is_file() and report.name == "report.html"
    out = tmp_path / "out"
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["epochs"] == 2 and evaluation["repeats"] == 2
    assert len(evaluation["best"]["test_accuracy"]) == len(evaluation["baseline"]["test_accuracy"])
    assert (out / "ablation.json").is_file()
    assert [line[:4] for line in lines if line[1:4] == "/5 "] == [
        "1/5 ",
        "2/5 ",
        "3/5 ",
        "4/5 ",
        "5/5 ",
    ]
    search = json.loads((out / "search.json").read_text())
    assert search["counted"] == 2  # 2 particles x 1 generation after the 3-particle screening
