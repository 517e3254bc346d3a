"""Retraining for ``dicelab evaluate``: a run that diverges is recorded and read back, not an
abort, and the summary, its markdown and the HTML report say which seeds diverged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from optuna.trial import create_trial

from dicelab.config import RunConfig, load_config, to_dict
from dicelab.reports.html import build_report
from dicelab.train import Trainer
from dicelab.tune.evaluate import (
    accuracy_text,
    divergence_note,
    error_reduction,
    evaluate,
    markdown,
    retrain,
)
from dicelab.tune.search import SearchOptions, open_study

#: A small task on which SGD at lr 0.1 (the lr gene's end, on the summed loss) diverges in
#: the first epoch on every seed and thread count tried (from lr 0.05 on), while the
#: baseline's lr 1e-3 trains.
TASK = ("data.name=digits", "device=cpu", "model.width=8", "data.train_limit=1000")


def config(data_root: Path, *extra: str) -> RunConfig:
    return load_config(None, [*TASK, f"data.root={data_root}", *extra])


def test_retrain_records_a_diverged_run_and_reads_it_back(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = {
        "wild": config(data_root, "optimizer.lr=1e4"),
        "calm": config(data_root, "optimizer.lr=1e-3"),
    }
    lines: list[str] = []
    results = retrain(configs, tmp_path, epochs=1, repeats=2, say=lines.append)
    wild, calm = results["wild"], results["calm"]
    assert wild["test_accuracy"] == [] and wild["runs"] == 2 and wild["seeds"] == [0, 1]
    assert wild["mean"] is None and wild["std"] is None and wild["error"] is None
    assert [d["seed"] for d in wild["diverged"]] == [0, 1]
    assert all(d["epoch"] == 1 and "NaN or infinite" in d["message"] for d in wild["diverged"])
    assert len(calm["test_accuracy"]) == 2 and calm["diverged"] == [] and calm["runs"] == 2
    assert calm["mean"] == pytest.approx(sum(calm["test_accuracy"]) / 2)
    assert calm["error"] == pytest.approx(1 - calm["mean"]) and calm["epochs"] == 1
    assert sum("wild-seed0: diverged: the training loss" in line for line in lines) == 1
    assert sum("calm-seed1: test accuracy" in line for line in lines) == 1
    assert json.loads((tmp_path / "wild-seed1" / "result.json").read_text())["status"] == (
        "diverged"
    )

    # a repeat reads every run back, the diverged ones too: nothing is trained again
    def refuse(self: Trainer, **kwargs: object) -> None:
        raise AssertionError(f"{self.run_dir} was trained again")

    monkeypatch.setattr(Trainer, "fit", refuse)
    lines.clear()
    assert retrain(configs, tmp_path, epochs=1, repeats=2, say=lines.append) == results
    assert sum("(read back)" in line for line in lines) == 4


def test_summary_lines_of_a_partly_diverged_configuration() -> None:
    partly = {
        "test_accuracy": [0.9, 0.92, 0.91, 0.93],
        "mean": 0.915,
        "std": 0.0129,
        "error": 0.085,
        "runs": 5,
        "diverged": [{"seed": 3, "epoch": 7, "message": "the training loss became NaN"}],
    }
    assert divergence_note("best", partly) == "best: 1 of 5 runs diverged (seed 3)"
    assert accuracy_text(partly) == "0.9150 ± 0.0129 (1/5 diverged)"
    baseline = {"test_accuracy": [0.8] * 5, "mean": 0.8, "std": 0.0, "error": 0.2}
    assert divergence_note("baseline", baseline) is None  # a summary of an earlier version
    reduction, why = error_reduction(partly, baseline)
    assert reduction == pytest.approx(1 - 0.085 / 0.2) and why is None
    gone = {**partly, "test_accuracy": [], "mean": None, "std": None, "error": None}
    assert error_reduction(gone, baseline) == (None, "no run of best completed")
    assert error_reduction(baseline, gone) == (None, "no run of baseline completed")


def diverging_search(data_root: Path, out: Path) -> SearchOptions:
    """A study over the lr gene whose best trial is lr 0.1 (gene 1), which diverges; the
    baseline's lr 1e-3 trains."""
    options = SearchOptions(
        out=str(out), genes=["lr"], threads=1, config=to_dict(config(data_root))
    )
    study = open_study(options)
    distributions = options.space().distributions()
    study.add_trial(create_trial(params={"lr": 1.0}, distributions=distributions, value=0.5))
    study.add_trial(create_trial(params={"lr": 3.0}, distributions=distributions, value=0.4))
    return options


def test_evaluate_with_a_diverged_best_says_so_and_keeps_the_baseline(
    data_root: Path, tmp_path: Path
) -> None:
    summary = evaluate(diverging_search(data_root, tmp_path), epochs=2, repeats=2)
    best, baseline = summary["best"], summary["baseline"]
    assert best["mean"] is None and [d["seed"] for d in best["diverged"]] == [0, 1]
    assert len(baseline["test_accuracy"]) == 2 and math.isfinite(baseline["mean"])
    assert summary["error_reduction"] is None
    assert summary["error_reduction_note"] == "no run of best completed"
    assert summary["divergences"] == ["best: 2 of 2 runs diverged (seeds 0, 1)"]
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["best"]["diverged"] == best["diverged"]  # valid JSON: no NaN anywhere
    report = (tmp_path / "evaluation.md").read_text()
    assert report == markdown(summary)
    assert "| best | diverged (2/2) | — | diverged (epoch " in report
    assert f"| baseline | {baseline['mean']:.4f} ± {baseline['std']:.4f} |" in report
    assert "**n/a** (no run of best completed)" in report
    assert "left out of the means: best: 2 of 2 runs diverged (seeds 0, 1)." in report
    page = build_report(tmp_path).read_text()
    assert "Relative test-error reduction: n/a (no run of best completed)" in page
    assert "every run of the best configuration diverged" in page
    assert "best: 2 of 2 runs diverged (seeds 0, 1)" in page


def test_markdown_of_a_partly_diverged_best_shows_each_seed() -> None:
    def runs(accs: list[float | None]) -> dict[str, object]:
        done = [a for a in accs if a is not None]
        mean = sum(done) / len(done)
        return {
            "test_accuracy": done,
            "mean": mean,
            "std": 0.01,
            "error": 1 - mean,
            "epochs": 3,
            "runs": len(accs),
            "seeds": list(range(len(accs))),
            "diverged": [
                {"seed": s, "epoch": 2, "message": "m"} for s, a in enumerate(accs) if a is None
            ],
        }

    best, baseline = runs([0.9, None, 0.92]), runs([0.8, 0.82, 0.81])
    reduction, why = error_reduction(best, baseline)
    summary = {
        "study": "search",
        "best_trial": 4,
        "best_validation_accuracy": 0.9,
        "epochs": 3,
        "repeats": 3,
        "best": best,
        "baseline": baseline,
        "error_reduction": reduction,
        "error_reduction_note": why,
        "divergences": [divergence_note("best", best)],
    }
    text = markdown(summary)
    assert "| best | 0.9100 ± 0.0100 (1/3 diverged) | 0.0900 | 0.9000, diverged (epoch 2), " in (
        text
    )
    assert f"**{reduction:.1%}** over the completed runs" in text
    assert "left out of the means: best: 1 of 3 runs diverged (seed 1)." in text
