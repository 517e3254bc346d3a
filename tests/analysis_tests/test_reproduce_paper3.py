"""Paper 3's reproduction: the full recipe is the authors' scripts, its dry-run prints exactly
the configurations that run, Welch's p-values, and the full pipeline end to end for one epoch
on CIFAR-format files with tiny models."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicelab.config import flatten, to_dict
from dicelab.data.standard import CIFAR_LAYOUTS
from dicelab.reproduce import dry_run, paper3
from dicelab.reproduce.paper3 import (
    METHODS,
    PAPER3_SCALES,
    add_welch_p,
    comparison_lines,
    method_configs,
    recipe_fields,
)

FULL = PAPER3_SCALES["full"]


def parse_dry_run(text: str) -> dict[str, dict[str, Any]]:
    """The ``key=value`` settings of each ``[run]`` block of a dry-run, values as written
    (JSON, or a bare string)."""
    blocks: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = blocks.setdefault(line[1:-1], {})
        elif current is not None and line.startswith("  ") and "=" in line and ":" not in line:
            key, _, raw = line.strip().partition("=")
            try:
                current[key] = json.loads(raw)
            except json.JSONDecodeError:
                current[key] = raw
        elif not line:
            current = None
    return blocks


def test_the_full_dry_run_prints_exactly_the_configurations_that_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the recipes' data root is relative: nothing may appear
    text = dry_run("paper3", "full")
    for scale in ("smoke", "cpu"):
        assert "updates" in dry_run("paper3", scale)
    assert list(tmp_path.iterdir()) == []  # nothing downloaded, generated or written
    blocks = parse_dry_run(text)
    configs = method_configs(FULL)
    assert list(blocks) == list(configs)
    for name, config in configs.items():
        resolved = {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in flatten(to_dict(config)).items()
        }
        assert blocks[name] == {key: resolved[key] for key in blocks[name]}, name
        assert set(blocks[name]) == set(recipe_fields(config)), name
    assert len(configs) == 4 * len(METHODS)


@pytest.mark.parametrize("bench", ["cifar10-resnet18", "cifar100-resnet18"])
def test_the_full_recipe_is_the_authors_scripts(bench: str) -> None:
    """The values of nblt/mARWP's scripts (cited in paper3.py and docs/FIDELITY.md)."""
    blocks = parse_dry_run(dry_run("paper3", "full"))
    for method in METHODS:
        got = blocks[f"{bench}-{method}"]
        assert got["data.name"] == bench.split("-")[0] and got["data.split"] == "final"
        assert got["model.name"] == "resnet18" and got["model.width"] == 64
        assert (got["optimizer.name"], got["optimizer.momentum"]) == ("momentum", 0.9)
        assert (got["optimizer.lr"], got["optimizer.weight_decay"]) == (0.1, 0.001)
        assert (got["train.batch_size"], got["train.reduction"]) == (256, "mean")
        assert (got["schedule.name"], got["schedule.min_lr"]) == ("cosine", 0.0)
        assert got["techniques.shuffle.enabled"] is True
        assert got["techniques.flip.mode"] == "horizontal"
        assert got["techniques.random_crop.padding"] == 4
        assert got["techniques.normalize.preset"] == "cifar10"  # on CIFAR-100 too
        assert (got["techniques.cutout.size"], got["techniques.cutout.p"]) == (16, 0.5)
        mixed = method in ("mrwp", "marwp")
        assert got["train.epochs"] == (400 if mixed else 200)
        assert got["schedule.interval"] == ("epoch" if mixed else "step")
    rwp, arwp = blocks[f"{bench}-rwp"], blocks[f"{bench}-arwp"]
    for got in (rwp, arwp):
        assert (got["optimizer.sigma"], got["optimizer.sigma_inc"]) == (0.001, 10.0)
        assert got["optimizer.sigma_schedule"] == "cosine"
    assert (arwp["optimizer.eta"], arwp["optimizer.beta"]) == (0.1, 0.99)
    for method in ("mrwp", "marwp"):
        got = blocks[f"{bench}-{method}"]
        assert (got["optimizer.sigma"], got["optimizer.lam"]) == (0.015, 0.5)
        assert got["optimizer.sigma_schedule"] == "constant"
        assert got["optimizer.mix_batches"] == "consecutive"
    assert (
        blocks[f"{bench}-marwp"]["optimizer.eta"],
        blocks[f"{bench}-marwp"]["optimizer.beta"],
    ) == (0.1, 0.99)
    assert blocks[f"{bench}-sam"]["optimizer.rho"] == 0.05
    assert "optimizer.sigma" not in blocks[f"{bench}-none"]  # only what the method uses


def test_the_dry_run_counts_updates_and_prices_the_protocol() -> None:
    text = dry_run("paper3", "full")
    # 50,000 / 256 -> 196 batches; 200 epochs; the mixed methods 400 epochs, two per update
    assert "196 batches per epoch, 200 epochs, 39,200 updates (39,200 batches)" in text
    assert "196 batches per epoch, 400 epochs, 39,200 updates (78,400 batches / 2" in text
    # passes per seed: 200 epochs x 50,000 = 10,000,000 for none, rwp and arwp; twice that for
    # SAM (two passes a batch) and the mixed methods (400 epochs): 9 x 10,000,000 x 3 seeds
    assert "cifar10-resnet18: 270,000,000 images (resnet18 on cifar10)" in text
    assert "seeds 0, 1, 2" in text


def test_welch_p_values_compare_with_sgd_and_sam_of_the_same_benchmark() -> None:
    def row(bench: str, method: str, accs: list[float]) -> dict[str, Any]:
        return {"benchmark": bench, "optimizer": method, "test_accuracy": accs}

    rows = [
        row("a", "none", [0.80, 0.81, 0.79, 0.80, 0.80]),
        row("a", "sam", [0.85, 0.86, 0.84, 0.85, 0.85]),
        row("a", "rwp", [0.80, 0.82, 0.78, 0.81, 0.79]),
        row("b", "none", [0.5, 0.5, 0.5]),
        row("b", "rwp", [0.5, 0.5, 0.5]),
    ]
    add_welch_p(rows)
    none_a, sam_a, rwp_a, none_b, rwp_b = rows
    assert none_a["p_vs_sgd"] is None and sam_a["p_vs_sam"] is None  # the reference itself
    assert sam_a["p_vs_sgd"] < 1e-4  # a 5-point gap with a 0.7-point spread
    assert rwp_a["p_vs_sgd"] > 0.5 and rwp_a["p_vs_sam"] < 1e-3
    assert none_b["p_vs_sam"] is None  # no SAM in benchmark b
    assert rwp_b["p_vs_sgd"] is None  # no spread in either sample: undefined, not NaN


def test_comparison_of_a_method_with_diverged_runs() -> None:
    """A method's diverged runs are left out of its numbers and named; one whose every run
    diverged shows as such, with no p-value, and never as NaN."""

    def row(method: str, accs: list[float], diverged: list[int]) -> dict[str, Any]:
        done = len(accs) > 0
        return {
            "method": method, "benchmark": "", "optimizer": method, "test_accuracy": accs,
            "mean": sum(accs) / len(accs) if done else None, "std": 0.01 if done else None,
            "runs": len(accs) + len(diverged),
            "diverged": [{"seed": s, "epoch": 3, "message": "m"} for s in diverged],
        }  # fmt: skip

    rows = [
        row("none", [0.80, 0.81, 0.79], []),
        row("sam", [0.85, 0.86], [2]),
        row("rwp", [], [0, 1, 2]),
        row("arwp", [0.82], [0, 1]),
    ]
    add_welch_p(rows)
    none, sam, rwp, arwp = rows
    assert sam["p_vs_sgd"] is not None and sam["p_vs_sgd"] < 0.05  # over its completed runs
    assert rwp["p_vs_sgd"] is None and rwp["p_vs_sam"] is None
    assert arwp["p_vs_sgd"] is None  # one completed run: no test
    lines = comparison_lines(rows)
    assert "0.8550 ± 0.0100 (1/3 diverged)" in lines[2]
    assert lines[3].split()[:3] == ["rwp", "diverged", "(3/3)"]
    assert lines[5:] == [
        "diverged, left out of the means: sam: 1 of 3 runs diverged (seed 2)",
        "diverged, left out of the means: rwp: 3 of 3 runs diverged (seeds 0, 1, 2)",
        "diverged, left out of the means: arwp: 2 of 3 runs diverged (seeds 0, 1)",
    ]
    assert not any("nan" in line for line in lines)


def test_updates_come_from_a_completed_run(tmp_path: Path) -> None:
    """A diverged run's result.json counts only the updates before it diverged."""
    for seed, updates in ((0, 7), (1, 30)):
        folder = tmp_path / f"sam-seed{seed}"
        folder.mkdir()
        (folder / "result.json").write_text(json.dumps({"updates": updates}))
    got = {"seeds": [0, 1], "diverged": [{"seed": 0, "epoch": 2, "message": "m"}]}
    assert paper3._updates(tmp_path, "sam", got) == 30
    gone = {"seeds": [0, 1], "diverged": [{"seed": 0}, {"seed": 1}]}
    assert paper3._updates(tmp_path, "sam", gone) is None


@pytest.fixture
def cifar_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CIFAR-10 and CIFAR-100 in their official binary layouts, each with 80 training images
    (CIFAR-10: 16 in each of its five files) and 16 test images."""
    rng = np.random.default_rng(0)
    for name, per_file in (("cifar10", 16), ("cifar100", 80)):
        layout = dataclasses.replace(CIFAR_LAYOUTS[name], train_records=per_file, test_records=16)
        monkeypatch.setitem(CIFAR_LAYOUTS, name, layout)
        folder = tmp_path / "data" / name / layout.folder
        folder.mkdir(parents=True)
        for file in (*layout.train, layout.test):
            count = layout.test_records if file == layout.test else per_file
            labels = rng.integers(0, layout.num_classes, (count, layout.label_bytes), np.uint8)
            pixels = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
            (folder / file).write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())
    return tmp_path / "data"


@pytest.mark.filterwarnings("ignore:top_eigenvalues:RuntimeWarning")  # 2 Lanczos steps only
def test_the_full_pipeline_runs_one_epoch_on_cifar_files(
    cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full recipe (augmentation, schedules, every method, both datasets), shrunk to one
    epoch, one seed and tiny models, trains, compares, measures curvature and reports."""
    tiny = dataclasses.replace(
        FULL,
        settings=(*FULL.settings, f"data.root={cifar_root}", "device=cpu",
                  "train.batch_size=32"),
        epochs=1, seeds=1, hessian_examples=16, trace_samples=2, hessian_iterations=2,
        landscape_steps=3,
        benchmarks={
            "cifar10-resnet18": (*FULL.benchmarks["cifar10-resnet18"], "model.width=2"),
            "cifar100-wrn": ("data.name=cifar100", "model.name=wideresnet", "model.depth=10",
                             "model.widen=1"),
        },
    )  # fmt: skip
    monkeypatch.setitem(PAPER3_SCALES, "full", tiny)
    report = paper3.run(tiny, tmp_path / "out", 1, lambda _: None)
    assert report.is_file()
    comparison = json.loads((tmp_path / "out" / "comparison.json").read_text())
    rows = {r["method"]: r for r in comparison["rows"]}
    names = {f"{b}-{m}" for b in tiny.benchmarks for m in METHODS}
    assert set(rows) == names
    for bench in tiny.benchmarks:
        updates = {rows[f"{bench}-{m}"]["updates"] for m in METHODS}
        assert updates == {3}  # ceil(80 / 32) batches; the mixed methods: 2 epochs, 2 per update
    assert all(0 <= r["mean"] <= 1 and r["p_vs_sgd"] is None for r in rows.values())
    assert {p.stem for p in (tmp_path / "out" / "hessian").glob("*.json")} == names
    assert math.isfinite(rows["cifar10-resnet18-marwp"]["mean"])
