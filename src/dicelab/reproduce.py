"""``dicelab reproduce paper1|paper3 --scale smoke|cpu|full``: each paper's pipeline in one
command, ending in ``report.html``.

- **paper1** (arXiv 2404.03992): a PSO search over the 22 genes → ``evaluate`` (best against
  the no-randomness baseline, the test-error reduction) → ``ablate`` (by component and by
  category) → ``analyze`` (correlations by optimizer, importance) → ``report``.
- **paper3** (arXiv 2404.00357): SGD, SAM, RWP, m-RWP, ARWP and m-ARWP with repeats. The
  mixed methods get twice the epochs, so every method takes the same number of updates. Then
  the Hessian (top eigenvalue, trace) and a 1-D loss landscape of each method's seed-0 model
  are computed, and the report is written.

The scales:

- ``smoke`` finishes in about 2 minutes on a 2-core CPU. Paper 1's smoke search runs on the
  generated mnist1d data with its reference CNN, a task far from its ceiling after 10 epochs,
  so a 30-trial search finds a real gain (measured in docs/REPRODUCTION.md); paper 3's uses
  mnist5k.
- ``cpu`` is the best honest reproduction on a 2-core machine, in about an hour per paper.
- ``full`` is the papers' protocol (CIFAR-10, the paper VGG, 20-epoch fitness, 22 particles;
  200-epoch training for paper 3). It is meant for GPU workers and a shared PostgreSQL storage
  (``--storage``), and it downloads CIFAR-10 (``data.download``).

Every step resumes. Run the same command again after an interruption: finished trials and
runs are kept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dicelab import _atomic
from dicelab.config import load_config, to_dict
from dicelab.exceptions import ConfigError, UnknownNameError

PAPERS = ("paper1", "paper3")
SCALES = ("smoke", "cpu", "full")


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


@dataclass(frozen=True)
class Paper3:
    """One scale of the paper-3 pipeline."""

    settings: tuple[str, ...]
    epochs: int
    seeds: int
    methods: tuple[str, ...] = ("none", "sam", "rwp", "mrwp", "arwp", "marwp")
    hessian_examples: int = 1000
    trace_samples: int = 30
    landscape_steps: int = 21
    extra: dict[str, str] = field(default_factory=dict)


_MNIST5K_NARROW = (
    "data.name=mnist5k",
    "model.name=vgg",
    "model.width=8",
    "train.recalibrate_bn=true",
)
_CIFAR10 = ("data.name=cifar10", "data.download=true", "model.name=vgg")

# mnist1d with its reference CNN: far from its ceiling after 10 epochs (the no-randomness
# baseline scores about 0.25, SGD with momentum about 0.8), so a 30-trial search has something
# to find, and an epoch takes well under a second. Fitness and evaluation train equally long,
# so the evaluation measures what the search optimised.
_MNIST1D_CNN = ("data.name=mnist1d", "model.name=cnn1d")

PAPER1_SCALES = {
    "smoke": Paper1((*_MNIST1D_CNN, "train.epochs=10"), 6, 5, None, 10, 3, 2, baseline_start=True),
    "cpu": Paper1((*_MNIST5K_NARROW, "train.epochs=3"), 22, 10, None, 10, 5, 3),
    "full": Paper1((*_CIFAR10, "train.epochs=20"), 22, 200, 5, 20, 5, 5, screen=100),
}

_PAPER3_OPTIMIZER = ("optimizer.name=momentum", "optimizer.lr=0.05", "train.reduction=mean")
PAPER3_SCALES = {
    "smoke": Paper3((*_MNIST5K_NARROW, *_PAPER3_OPTIMIZER), 2, 2, hessian_examples=500,
                    trace_samples=10, landscape_steps=11),
    "cpu": Paper3(("data.name=mnist5k", "model.name=vgg", *_PAPER3_OPTIMIZER), 10, 3),
    "full": Paper3(
        ("data.name=cifar10", "data.download=true", "model.name=resnet18",
         "optimizer.name=momentum", "optimizer.lr=0.1", "optimizer.weight_decay=0.001",
         "train.reduction=mean", "train.batch_size=256"),
        200, 3, hessian_examples=5000, trace_samples=100, landscape_steps=51,
    ),
}  # fmt: skip


def _check(paper: str, scale: str) -> None:
    if paper not in PAPERS:
        raise UnknownNameError("paper", paper, PAPERS, kind="paper")
    if scale not in SCALES:
        raise UnknownNameError("--scale", scale, SCALES, kind="scale")


def reproduce(
    paper: str,
    scale: str,
    *,
    out: str | Path | None = None,
    workers: int = 2,
    storage: str | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Path:
    """Run (or continue) a paper's pipeline; the path of its report.

    ``seed`` is paper 1's search seed (the swarm's start and moves); the training seeds stay
    those of the scale's configuration, so two seeds differ only in what the search found.
    """
    _check(paper, scale)
    if workers < 1:
        raise ConfigError("--workers", workers, "must be >= 1")
    if scale == "full" and paper == "paper1" and storage is None:
        raise ConfigError(
            "--storage",
            None,
            "the full scale runs many workers: give a shared database, e.g. "
            "postgresql://user:pass@host/db",
        )
    folder = Path(out or Path("runs") / f"reproduce-{paper}-{scale}")
    folder.mkdir(parents=True, exist_ok=True)
    if paper == "paper1":
        return _paper1(PAPER1_SCALES[scale], folder, workers, storage, seed, log)
    return _paper3(PAPER3_SCALES[scale], folder, workers, log)


def _paper1(
    scale: Paper1,
    folder: Path,
    workers: int,
    storage: str | None,
    seed: int,
    log: Callable[[str], None],
) -> Path:
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


def _paper3(scale: Paper3, folder: Path, workers: int, log: Callable[[str], None]) -> Path:
    from dicelab.reports.html import build_report
    from dicelab.tune.evaluate import retrain

    doubled = ("mrwp", "marwp")  # two batches per update: twice the epochs, same updates
    configs = {}
    for method in scale.methods:
        epochs = scale.epochs * (2 if method in doubled else 1)
        settings = [*scale.settings, f"optimizer.perturbation={method}", f"train.epochs={epochs}"]
        configs[method] = load_config(None, settings)
    log(f"1/3 train: {len(configs)} optimizers x {scale.seeds} seeds")
    results = retrain(
        configs, folder / "runs", epochs=None, repeats=scale.seeds, workers=workers, say=log
    )
    rows = []
    for method, got in results.items():
        run = folder / "runs" / f"{method}-seed{configs[method].seed}"
        updates = json.loads((run / "result.json").read_text())["updates"]
        rows.append({"method": method, **{k: got[k] for k in ("mean", "std")},
                     "test_accuracy": got["test_accuracy"], "updates": updates})  # fmt: skip
    description = (
        f"Test accuracy over {scale.seeds} seeds; {scale.epochs} epochs "
        f"({2 * scale.epochs} for the mixed methods, the same number of updates)."
    )
    _atomic.write_json(folder / "comparison.json", {"description": description, "rows": rows})
    log("2/3 Hessian and loss landscape of each seed-0 model")
    for method, config in configs.items():
        _curvature(folder, method, folder / "runs" / f"{method}-seed{config.seed}", scale)
    log("3/3 report")
    return build_report(folder, title="Reproduction: paper 3")


def _curvature(folder: Path, method: str, run: Path, scale: Paper3) -> None:
    """The Hessian report and a 1-D landscape of one trained run (skipped when present)."""
    import torch.nn.functional as F

    from dicelab.analysis.hessian import hessian_report
    from dicelab.analysis.landscape import random_direction, slice_1d
    from dicelab.analysis.runs import load_trained

    hessian_path = folder / "hessian" / f"{method}.json"
    landscape_path = folder / "landscape" / f"{method}.json"
    if hessian_path.is_file() and landscape_path.is_file():
        return
    trained = load_trained(run)
    batches = trained.batches("train", examples=scale.hessian_examples)
    report = hessian_report(
        trained.model, F.cross_entropy, batches, top_k=1, trace_samples=scale.trace_samples
    )
    _atomic.write_json(hessian_path, report.to_dict())
    direction = random_direction(trained.model, seed=0)
    landscape = slice_1d(
        trained.model, F.cross_entropy, batches, direction, steps=scale.landscape_steps
    )
    _atomic.write_json(landscape_path, landscape.to_dict())


def describe(paper: str, scale: str) -> dict[str, Any]:
    """The settings of one pipeline, for listings and the docs."""
    _check(paper, scale)
    chosen = PAPER1_SCALES[scale] if paper == "paper1" else PAPER3_SCALES[scale]
    return asdict(chosen)
