"""Paper 1 (arXiv 2404.03992): a PSO search over the 22 genes → ``evaluate`` (best against the
no-randomness baseline, the test-error reduction) → ``ablate`` (by component and by category)
→ ``analyze`` (correlations by optimizer, importance) → ``report``."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicelab.config import load_config, to_dict
from dicelab.reproduce._common import CIFAR10, MNIST5K_NARROW


@dataclass(frozen=True)
class Paper1:
    """One scale of the paper-1 pipeline."""

    settings: tuple[str, ...]
    particles: int
    generations: int
    patience: int | None
    eval_epochs: int
    repeats: int
    ablate_repeats: int
    screen: int = 0
    baseline_start: bool = False


# mnist1d with its reference CNN: far from its ceiling after 10 epochs (the no-randomness
# baseline scores about 0.25, SGD with momentum about 0.8), so a 30-trial search has something
# to find, and an epoch takes well under a second. Fitness and evaluation train equally long,
# so the evaluation measures what the search optimised.
_MNIST1D_CNN = ("data.name=mnist1d", "model.name=cnn1d")

PAPER1_SCALES = {
    "smoke": Paper1((*_MNIST1D_CNN, "train.epochs=10"), 6, 5, None, 10, 3, 2, baseline_start=True),
    "cpu": Paper1((*MNIST5K_NARROW, "train.epochs=3"), 22, 10, None, 10, 5, 3),
    "full": Paper1((*CIFAR10, "train.epochs=20"), 22, 200, 5, 20, 5, 5, screen=100),
}


def run(
    scale: Paper1,
    folder: Path,
    workers: int,
    storage: str | None,
    seed: int,
    log: Callable[[str], None],
) -> Path:
    """Search, evaluate, ablate, analyze, report; each step resumes."""
    from dicelab.analysis.ablation import ablate
    from dicelab.analysis.analyze import analyze
    from dicelab.reports.html import build_report
    from dicelab.tune.evaluate import evaluate
    from dicelab.tune.search import SearchOptions, run_search

    options = SearchOptions(
        out=str(folder),
        storage=storage,
        study="paper1",
        particles=scale.particles,
        generations=scale.generations,
        patience=scale.patience,
        screen=scale.screen,
        baseline_start=scale.baseline_start,
        seed=seed,
        workers=workers,
        config=to_dict(load_config(None, list(scale.settings))),
    )
    log(f"1/5 search: {scale.particles} particles x {scale.generations} generations")
    run_search(options)
    log(f"2/5 evaluate: best and baseline, {scale.repeats} seeds, {scale.eval_epochs} epochs")
    summary = evaluate(
        options, epochs=scale.eval_epochs, repeats=scale.repeats, workers=workers, say=log
    )
    log(f"    {_reduction_words(summary)}")
    log(f"3/5 ablate: {scale.ablate_repeats} seeds per variant")
    ablate(
        options, epochs=scale.eval_epochs, repeats=scale.ablate_repeats, workers=workers, say=log
    )
    log("4/5 analyze")
    analyze(options, say=log)
    log("5/5 report")
    return build_report(folder, study="paper1", storage=storage, title="Reproduction: paper 1")


def _reduction_words(summary: dict[str, Any]) -> str:
    """The relative test-error reduction of an evaluation with its standard error.

    r = 1 − e_best/e_base, where each error is a mean over n seeds; by the delta method its
    standard error is (e_best/e_base)·√((s_best/e_best)² + (s_base/e_base)²)/√n, with s the
    standard deviation of the test accuracy (that of the test error) over the seeds.
    """
    reduction = summary["error_reduction"]
    if reduction is None:
        return "(no errors)"
    best, base = summary["best"], summary["baseline"]
    n = len(best["test_accuracy"])
    if n < 2 or best["error"] <= 0:
        return f"error reduction {reduction:.1%}"
    ratio = best["error"] / base["error"]
    spread = math.hypot(best["std"] / best["error"], base["std"] / base["error"])
    return (
        f"error reduction {reduction:.1%} ± {ratio * spread / math.sqrt(n):.1%} (s.e., {n} seeds)"
    )
