"""The ``search`` and ``evaluate`` commands (they need optuna, imported when they run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dicelab.exceptions import ConfigError


def add_search(parser: argparse.ArgumentParser) -> None:
    from dicelab.cli import add_config_arguments

    add_config_arguments(parser)
    _add_study_arguments(parser)
    parser.add_argument(
        "--sampler",
        default="pso",
        choices=("pso", "random", "tpe", "cmaes"),
        help="pso (default), random, tpe, or cmaes (CMA-ES from the baseline)",
    )
    parser.add_argument(
        "--genes",
        help="comma-separated genes to search (`dicelab list space`); default: all 22",
    )
    parser.add_argument("--particles", type=int, default=22, help="swarm size (default: 22)")
    parser.add_argument(
        "--sparse",
        type=int,
        default=4,
        help="optional techniques on per starting particle, the authors' sparse start; "
        "0 starts uniformly (default: 4)",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default: 0)")
    parser.add_argument("--trials", type=int, help="stop after this many finished trials")
    parser.add_argument("--generations", type=int, help="PSO: stop after this many generations")
    parser.add_argument(
        "--patience", type=int, help="PSO: stop after this many generations without a new best"
    )
    parser.add_argument(
        "--prune", default="none", choices=("none", "median"), help="prune hopeless runs"
    )
    parser.add_argument(
        "--cut-threshold",
        type=float,
        default=0.12,
        help="stop a run whose validation accuracy falls below this (default: 0.12)",
    )
    parser.add_argument(
        "--screen",
        type=int,
        default=0,
        help="multi-fidelity: first screen this many particles for --screen-epochs epochs",
    )
    parser.add_argument("--screen-epochs", type=int, default=1, help="default: 1")
    parser.add_argument(
        "--baseline-start",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="PSO: start the first particle at the no-randomness baseline, so the best is "
        "never worse than it on validation (default); --no-baseline-start is the authors' "
        "start",
    )
    parser.add_argument(
        "--update",
        default="synchronous",
        choices=("synchronous", "asynchronous"),
        help="PSO: move a generation at once, its particles trained side by side (default), "
        "or one particle after the other from the latest global best (the authors')",
    )
    parser.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="PSO: a particle whose configuration was already trained takes that result "
        "instead of training again (exact: every trial trains with the same seed); needs "
        "--generations or --patience",
    )
    parser.add_argument("--workers", type=int, default=1, help="local worker processes")
    parser.add_argument(
        "--threads", type=int, help="torch threads per worker (default: cores / workers)"
    )


def _add_study_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/search", help="search folder (%(default)s)")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress line per finished trial or run"
    )
    parser.add_argument(
        "--storage",
        help="journal file path or database URL (default: <out>/study.journal); with a "
        "database URL --study is required",
    )
    parser.add_argument("--study", help="study name (default: search)")


def _study_name(args: argparse.Namespace) -> str:
    """The study a command works on; also refuses an empty ``--out`` (every command that
    names a study reads or writes its folder)."""
    from dicelab.cli import folder_argument

    folder_argument("--out", args.out)
    if args.study:
        return str(args.study)
    if args.storage and "://" in args.storage:
        raise ConfigError(
            "--study", None, "name the study to use in a shared database (--study NAME)"
        )
    return "search"


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_search(args: argparse.Namespace) -> int:
    from dicelab.api import search
    from dicelab.tune.search import BEST_CONFIG, SUMMARY, summary_lines

    _quiet_optuna()
    overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
    summary = search(
        args.config,
        overrides=overrides,
        out=args.out,
        storage=args.storage,
        study=_study_name(args),
        sampler=args.sampler,
        genes=args.genes.split(",") if args.genes else None,
        particles=args.particles,
        sparse=args.sparse,
        seed=args.seed,
        trials=args.trials,
        generations=args.generations,
        patience=args.patience,
        prune=args.prune,
        cut_threshold=args.cut_threshold,
        screen=args.screen,
        screen_epochs=args.screen_epochs,
        baseline_start=args.baseline_start,
        update=args.update,
        cache=args.cache,
        workers=args.workers,
        threads=args.threads,
        quiet=args.quiet,
    )
    for line in summary_lines(summary):
        print(line)
    out = Path(args.out)
    if summary["best"] is None:
        print(f"summary in {out / SUMMARY}", file=sys.stderr)
        return 1
    print(f"summary in {out / SUMMARY}; best configuration in {out / BEST_CONFIG}")
    return 0


def add_evaluate(parser: argparse.ArgumentParser) -> None:
    _add_study_arguments(parser)
    parser.add_argument("--epochs", type=int, help="final training epochs (default: the search's)")
    parser.add_argument("--repeats", type=int, default=5, help="seeds per configuration")
    parser.add_argument("--workers", type=int, default=1, help="runs trained side by side")


def run_evaluate(args: argparse.Namespace) -> int:
    from dicelab.api import evaluate
    from dicelab.tune.evaluate import markdown

    _quiet_optuna()
    summary = evaluate(args.out, **_retraining(args))
    print(markdown(summary))
    return 0


def _retraining(args: argparse.Namespace) -> dict[str, Any]:
    """The options ``evaluate`` and ``ablate`` share: the study and how to retrain."""
    return {
        "storage": args.storage,
        "study": _study_name(args),
        "epochs": args.epochs,
        "repeats": args.repeats,
        "workers": args.workers,
        "quiet": args.quiet,
    }


def add_ablate(parser: argparse.ArgumentParser) -> None:
    _add_study_arguments(parser)
    parser.add_argument("--epochs", type=int, help="training epochs (default: the search's)")
    parser.add_argument("--repeats", type=int, default=3, help="seeds per variant (default: 3)")
    parser.add_argument("--workers", type=int, default=1, help="runs trained side by side")


def run_ablate(args: argparse.Namespace) -> int:
    from dicelab.analysis.ablation import ABLATION_MD
    from dicelab.api import ablate

    _quiet_optuna()
    ablate(args.out, **_retraining(args))
    print((Path(args.out) / ABLATION_MD).read_text())
    return 0


def add_analyze(parser: argparse.ArgumentParser) -> None:
    _add_study_arguments(parser)
    parser.add_argument(
        "--no-importance", action="store_true", help="skip PED-ANOVA and fANOVA importance"
    )


def run_analyze(args: argparse.Namespace) -> int:
    from dicelab.analysis.analyze import ANALYSIS
    from dicelab.api import analyze

    _quiet_optuna()
    summary = analyze(
        args.out,
        storage=args.storage,
        study=_study_name(args),
        importance=not args.no_importance,
        quiet=args.quiet,
    )
    folder = Path(args.out) / ANALYSIS
    for note in summary["notes"]:
        print(f"note: {note}")
    print(f"tables written to {folder} (CSV and markdown)")
    print((folder / "correlations.md").read_text())
    return 0


def add_report(parser: argparse.ArgumentParser) -> None:
    _add_study_arguments(parser)
    parser.add_argument("--title", help="the report's title")


def run_report(args: argparse.Namespace) -> int:
    from dicelab.api import report
    from dicelab.cli import folder_argument

    _quiet_optuna()
    folder = folder_argument("--out", args.out)
    assert folder is not None  # --out has a default
    if not folder.is_dir():
        raise ConfigError("--out", str(folder), "is not a folder of results")
    path = report(folder, study=args.study or "search", storage=args.storage, title=args.title)
    print(f"report written to {path}")
    return 0
