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

A run that diverges (NaN or infinite loss or weights) is recorded, not an error: the other
runs go on, the means and the error reduction are taken over the completed runs, and every
table says which seeds diverged (``"best: 1 of 5 runs diverged (seed 3)"``). A diverged run's
folder is read back like a finished one, since the same configuration and seed diverge again.
When no run of a configuration completed, its mean and the error reduction are None, with
the reason beside them.
"""

from __future__ import annotations

import math
import multiprocessing
import statistics
from collections.abc import Callable, Mapping
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
from dicelab.train.trainer import RunResult, finished_result
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


#: The ends of a retraining run that are read back rather than trained again.
ENDED = ("completed", "diverged")


def _run(job: tuple[dict[str, Any], str, int]) -> tuple[RunResult, bool]:
    """Train one configuration in its run folder (resuming); its result, completed or
    diverged, and whether it was read back from an earlier run."""
    data, run_dir, threads = job
    import torch

    torch.set_num_threads(threads)
    config = from_dict(data)
    result = finished_result(Path(run_dir), config_hash(config), ENDED)  # before data loads
    read_back = result is not None
    if result is None:
        # The trackers of `log` record every run of this batch in one place: the parent
        # folder (`<out>/evaluate/tensorboard/best-seed0`, one MLflow store for all).
        folder = Path(run_dir)
        trainer = Trainer(config, run_dir=folder, track_root=folder.parent, track_run=folder.name)
        result = trainer.fit(resume=True)
    if result.status not in ENDED or (result.status == "completed" and result.test_acc is None):
        raise RunError(f"{run_dir}: the run {result.status}: {result.message}")
    return result, read_back


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
    ``seed + 1``, ...) in ``out/<name>-seed<s>``; per name, the summary of its runs.

    Each summary holds ``test_accuracy`` (the test accuracies of the completed runs, in seed
    order), their ``mean``, ``std`` and ``error`` (1 − mean; all three None when no run
    completed), ``epochs``, ``runs`` (how many were run), ``seeds`` (which) and ``diverged``:
    one ``{"seed", "epoch", "message"}`` per run that diverged, in the epoch named, so the
    numbers above leave it out (:func:`divergence_note` says so in one line).

    Finished and diverged runs are read back and interrupted ones resume, so this can be
    repeated. ``say`` gets one line per ended run (its test accuracy, or the divergence and
    its reason; the time so far and left).
    """
    check_protocol(epochs, repeats, workers)
    jobs = []
    threads = max(1, usable_cpus() // workers)
    for name, config in configs.items():
        for r in range(repeats):
            seed = config.seed + r
            jobs.append((_final(config, epochs, seed), str(out / f"{name}-seed{seed}"), threads))
    progress = Progress(len(jobs), say)

    def finished(index: int, outcome: tuple[RunResult, bool]) -> RunResult:
        result, read_back = outcome
        how = "read back" if read_back else "trained"
        if result.status == "diverged":
            ended = f"diverged: {result.message}"
        else:
            ended = f"test accuracy {result.test_acc:.4f}"
        progress.step(f"{Path(jobs[index][1]).name}: {ended} ({how})")
        return result

    ends: dict[int, RunResult] = {}
    if workers == 1:
        for i, job in enumerate(jobs):
            ends[i] = finished(i, _run(job))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(_run, job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                ends[futures[future]] = finished(futures[future], future.result())
    results: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(configs):
        span = range(i * repeats, (i + 1) * repeats)
        results[name] = _summarize([jobs[k][0] for k in span], [ends[k] for k in span])
    return results


def _summarize(runs: list[dict[str, Any]], ends: list[RunResult]) -> dict[str, Any]:
    """The summary of one configuration's runs (their configurations and results), as
    :func:`retrain` describes it: statistics over the completed runs, the diverged listed."""
    accs = [end.test_acc for end in ends if end.test_acc is not None]
    diverged = [
        {"seed": run["seed"], "epoch": end.epochs_completed + 1, "message": end.message}
        for run, end in zip(runs, ends, strict=True)
        if end.status == "diverged"
    ]
    mean = statistics.mean(accs) if accs else None
    return {
        "test_accuracy": accs,
        "mean": mean,
        "std": None if mean is None else statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "error": None if mean is None else 1 - mean,
        "epochs": from_dict(runs[0]).train.epochs,
        "runs": len(runs),
        "seeds": [run["seed"] for run in runs],
        "diverged": diverged,
    }


def divergence_note(name: str, result: Mapping[str, Any]) -> str | None:
    """One line on the runs of configuration ``name`` that diverged, such as ``"best: 1 of 5
    runs diverged (seed 3)"``; None when none did (or ``result`` predates the record).

    >>> divergence_note("best", {"runs": 5, "diverged": [{"seed": 3}]})
    'best: 1 of 5 runs diverged (seed 3)'
    """
    diverged = result.get("diverged") or []
    if not diverged:
        return None
    seeds = ", ".join(str(d["seed"]) for d in diverged)
    plural = "s" if len(diverged) > 1 else ""
    return f"{name}: {len(diverged)} of {result['runs']} runs diverged (seed{plural} {seeds})"


def accuracy_text(result: Mapping[str, Any]) -> str:
    """A retrained configuration's test accuracy as a table cell: mean ± std over the
    completed runs, with the share of its runs that diverged, or only that share when every
    run diverged.

    >>> accuracy_text({"mean": 0.9, "std": 0.01, "runs": 3, "diverged": [{"seed": 1}]})
    '0.9000 ± 0.0100 (1/3 diverged)'
    >>> accuracy_text({"mean": None, "std": None, "runs": 3, "diverged": [{}, {}, {}]})
    'diverged (3/3)'
    """
    diverged = len(result.get("diverged") or [])
    if result["mean"] is None:
        return f"diverged ({diverged}/{result['runs']})"
    shown = f"{result['mean']:.4f} ± {result['std']:.4f}"
    return f"{shown} ({diverged}/{result['runs']} diverged)" if diverged else shown


def error_reduction(
    best: Mapping[str, Any], baseline: Mapping[str, Any]
) -> tuple[float | None, str | None]:
    """``1 − err_best/err_baseline`` from the mean errors over the completed runs, or None
    and the reason: no run of one side completed, or the baseline makes no errors."""
    for name, result in (("best", best), ("baseline", baseline)):
        if result["error"] is None:
            return None, f"no run of {name} completed"
    if baseline["error"] <= 0:
        return None, "the baseline makes no errors"
    return 1 - best["error"] / baseline["error"], None


def evaluate(
    options: SearchOptions,
    *,
    epochs: int | None = None,
    repeats: int = 5,
    workers: int = 1,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Retrain the best and the baseline configuration ``repeats`` times; the summary.
    ``say`` gets one progress line per ended run.

    Besides each configuration's :func:`retrain` summary, it holds ``error_reduction``
    (None when it cannot be computed, ``error_reduction_note`` saying why) and
    ``divergences``, one :func:`divergence_note` per configuration with a diverged run.
    """
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
    reduction, why = error_reduction(results["best"], results["baseline"])
    summary["error_reduction"] = reduction
    summary["error_reduction_note"] = why
    notes = (divergence_note(name, results[name]) for name in ("baseline", "best"))
    summary["divergences"] = [note for note in notes if note is not None]
    _atomic.write_json(Path(options.out) / EVALUATION, summary)
    _atomic.write_text(Path(options.out) / REPORT, markdown(summary))
    return summary


def markdown(summary: dict[str, Any]) -> str:
    """The evaluation as a markdown table; a diverged run shows in its seed's cell, and a
    line under the table names the seeds left out of the means."""
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
        diverged = {d["seed"]: d["epoch"] for d in row["diverged"]}
        accuracies = iter(row["test_accuracy"])
        seeds = ", ".join(
            f"diverged (epoch {diverged[seed]})" if seed in diverged else f"{next(accuracies):.4f}"
            for seed in row["seeds"]
        )
        error = "—" if row["error"] is None else f"{row['error']:.4f}"
        lines.append(f"| {name} | {accuracy_text(row)} | {error} | {seeds} |")
    reduction = summary["error_reduction"]
    if reduction is None:
        shown = f"**n/a** ({summary['error_reduction_note']})"
    else:
        over = " over the completed runs" if summary["divergences"] else ""
        shown = f"**{reduction:.1%}**{over}"
    lines += ["", f"Relative test-error reduction 1 − err_best/err_baseline: {shown}"]
    if summary["divergences"]:
        lines += [
            "",
            "Diverged (NaN or infinite loss or weights), left out of the means: "
            + "; ".join(summary["divergences"])
            + ".",
        ]
    return "\n".join([*lines, ""])
