"""``dicelab evaluate``: the best configuration of a search against the no-randomness baseline.

This is the papers' final protocol. Both configurations are retrained on the full training
set (``data.split=final``) for the final number of epochs, ``repeats`` times with seeds
``seed, seed + 1, ...``, and scored on the test set. When the final number of epochs differs
from the search's, the lr- and batch-schedule genes are rescaled so their period stays the
same number of epochs (:func:`rescale_schedule`, as the authors' ``VGG MNIST.ipynb``). The
headline measure is the relative test-error reduction ``1 − err_best / err_baseline``,
computed from the mean errors.

Every run has its own folder under ``<out>/evaluate/``. A finished run is read back, not
retrained, and an interrupted one resumes from its checkpoint, so the command can be repeated
after a crash or with more repeats.
"""

from __future__ import annotations

import math
import multiprocessing
import statistics
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from dicelab import _atomic
from dicelab._progress import Progress
from dicelab.config import RunConfig, config_hash, from_dict, to_dict
from dicelab.exceptions import ConfigError, RunError
from dicelab.train import Trainer
from dicelab.train.trainer import finished_result
from dicelab.tune.objective import configure
from dicelab.tune.search import SearchOptions, open_study, usable_cpus

EVALUATION = "evaluation.json"
REPORT = "evaluation.md"


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The completed trial with the highest value (the lower number on a tie)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        raise RunError(f"study {study.study_name!r} has no completed trial to evaluate yet")
    return max(done, key=lambda t: (float(t.value or 0.0), -t.number))


def _run(job: tuple[dict[str, Any], str, int]) -> tuple[float, bool]:
    """Train one configuration in its run folder (resuming); its test accuracy, and whether
    it was read back from an earlier finished run."""
    data, run_dir, threads = job
    import torch

    torch.set_num_threads(threads)
    config = from_dict(data)
    result = finished_result(Path(run_dir), config_hash(config))  # before any data loads
    read_back = result is not None
    if result is None:
        # The trackers of `log` record every run of this batch in one place: the parent
        # folder (`<out>/evaluate/tensorboard/best-seed0`, one MLflow store for all).
        folder = Path(run_dir)
        trainer = Trainer(config, run_dir=folder, track_root=folder.parent, track_run=folder.name)
        result = trainer.fit(resume=True)
    if result.status != "completed" or result.test_acc is None:
        raise RunError(f"{run_dir}: the run {result.status}: {result.message}")
    return result.test_acc, read_back


#: The techniques whose gene sets a period as a share of the planned epochs,
#: ``P = int((1 − |s|) · E) + 1`` (:mod:`dicelab.techniques.optimization.lr_schedule`).
SCHEDULE_TECHNIQUES = ("lr_schedule", "batch_schedule")


def rescale_schedule(s: float, searched: int, final: int) -> float:
    """The schedule gene that keeps the period *in epochs* when a configuration searched for
    ``searched`` epochs is retrained for ``final``, as the authors rescale it for their longer
    final runs (``VGG MNIST.ipynb``): s' = sign(s)·(1 − r·(1 − |s|)) with r = searched/final,
    so that (1 − |s'|)·final = (1 − |s|)·searched. Clipped to [−1, 1] in magnitude (a
    shorter retraining than the search can hold a period longer than the run: no change).

    >>> rescale_schedule(-0.5, 20, 100)  # every 11 epochs, in 20 as in 100
    -0.9
    >>> rescale_schedule(0.0, 20, 100)  # constant stays constant
    0.0
    """
    if s == 0:
        return 0.0
    magnitude = min(max(1 - searched / final * (1 - abs(s)), 0.0), 1.0)
    return math.copysign(magnitude, s)


def _final(config: RunConfig, epochs: int | None, seed: int) -> dict[str, Any]:
    """One retraining run's configuration: the full training set, seed ``seed``, ``epochs``
    epochs, the schedule genes rescaled to keep their period in epochs."""
    data = to_dict(config)
    data["data"]["split"] = "final"
    data["seed"] = seed
    if epochs is not None and epochs != config.train.epochs:
        data["train"]["epochs"] = epochs
        for name in SCHEDULE_TECHNIQUES:
            technique = data["techniques"].get(name)
            if technique and technique.get("s"):
                technique["s"] = rescale_schedule(technique["s"], config.train.epochs, epochs)
    return data


def check_protocol(epochs: int | None, repeats: int, workers: int) -> None:
    """The retraining options: one clear error for a bad value."""
    if repeats < 1:
        raise ConfigError("--repeats", repeats, "must be >= 1")
    if epochs is not None and epochs < 1:
        raise ConfigError("--epochs", epochs, "must be >= 1")
    if workers < 1:
        raise ConfigError("--workers", workers, "must be >= 1")


def retrain(
    configs: dict[str, RunConfig],
    out: Path,
    *,
    epochs: int | None,
    repeats: int,
    workers: int = 1,
    say: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train each configuration ``repeats`` times on the full training set (seeds ``seed``,
    ``seed + 1``, ...) in ``out/<name>-seed<s>``; per name: test accuracies, mean, std, error.

    Finished runs are read back and interrupted ones resume, so this can be repeated.
    ``say`` gets one line per finished run (its test accuracy, the time so far and left).
    """
    check_protocol(epochs, repeats, workers)
    jobs = []
    threads = max(1, usable_cpus() // workers)
    for name, config in configs.items():
        for r in range(repeats):
            seed = config.seed + r
            jobs.append((_final(config, epochs, seed), str(out / f"{name}-seed{seed}"), threads))
    progress = Progress(len(jobs), say)

    def finished(index: int, outcome: tuple[float, bool]) -> float:
        accuracy, read_back = outcome
        how = "read back" if read_back else "trained"
        progress.step(f"{Path(jobs[index][1]).name}: test accuracy {accuracy:.4f} ({how})")
        return accuracy

    accuracies: list[float] = [0.0] * len(jobs)
    if workers == 1:
        for i, job in enumerate(jobs):
            accuracies[i] = finished(i, _run(job))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(_run, job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                accuracies[futures[future]] = finished(futures[future], future.result())
    results: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(configs):
        accs = accuracies[i * repeats : (i + 1) * repeats]
        results[name] = {
            "test_accuracy": accs,
            "mean": statistics.mean(accs),
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "error": 1 - statistics.mean(accs),
            "epochs": from_dict(jobs[i * repeats][0]).train.epochs,
        }
    return results


def evaluate(
    options: SearchOptions,
    *,
    epochs: int | None = None,
    repeats: int = 5,
    workers: int = 1,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Retrain the best and the baseline configuration ``repeats`` times; the summary.
    ``say`` gets one progress line per finished run."""
    check_protocol(epochs, repeats, workers)
    study = open_study(options)
    best = best_trial(study)
    space = options.space()
    base = options.base()
    configs = {
        "best": configure(base, space, best.params),
        "baseline": configure(base, space, space.baseline_params()),
    }
    results = retrain(
        configs,
        Path(options.out) / "evaluate",
        epochs=epochs,
        repeats=repeats,
        workers=workers,
        say=say,
    )
    summary: dict[str, Any] = {
        "study": options.study,
        "best_trial": best.number,
        "best_validation_accuracy": best.value,
        "best_params": best.params,
        "epochs": results["best"]["epochs"],
        "repeats": repeats,
        **results,
    }
    base_error = summary["baseline"]["error"]
    summary["error_reduction"] = (
        1 - summary["best"]["error"] / base_error if base_error > 0 else None
    )
    _atomic.write_json(Path(options.out) / EVALUATION, summary)
    _atomic.write_text(Path(options.out) / REPORT, markdown(summary))
    return summary


def markdown(summary: dict[str, Any]) -> str:
    """The evaluation as a markdown table."""
    lines = [
        f"Best trial {summary['best_trial']} of study `{summary['study']}` (validation accuracy "
        f"{summary['best_validation_accuracy']:.4f}) against the no-randomness baseline: "
        f"{summary['epochs']} epochs on the full training set, {summary['repeats']} seeds.",
        "",
        "| configuration | test accuracy (mean ± std) | test error | per seed |",
        "|---|---|---|---|",
    ]
    for name in ("baseline", "best"):
        row = summary[name]
        seeds = ", ".join(f"{a:.4f}" for a in row["test_accuracy"])
        lines.append(
            f"| {name} | {row['mean']:.4f} ± {row['std']:.4f} | {row['error']:.4f} | {seeds} |"
        )
    reduction = summary["error_reduction"]
    shown = "n/a (the baseline makes no errors)" if reduction is None else f"{reduction:.1%}"
    lines += ["", f"Relative test-error reduction 1 − err_best/err_baseline: **{shown}**", ""]
    return "\n".join(lines)
