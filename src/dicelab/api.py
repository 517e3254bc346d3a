"""The Python API: one function per command, with the command's options as keyword arguments
and its results as return values (the same files are written as by the CLI).

``dicelab.train``, ``dicelab.search``, ``dicelab.evaluate``, ``dicelab.ablate``,
``dicelab.analyze`` and ``dicelab.report`` are these functions; ``import dicelab`` stays
light, since each is imported on first use. A bad value raises the
:class:`~dicelab.exceptions.DicelabError` whose message the CLI prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dicelab._progress import stderr

if TYPE_CHECKING:
    from dicelab.analysis.ablation import AblationRow
    from dicelab.config import RunConfig
    from dicelab.train.trainer import RunResult

__all__ = ["ablate", "analyze", "evaluate", "report", "search", "train"]


def _config(
    config: RunConfig | Mapping[str, Any] | str | Path | None, overrides: Sequence[str]
) -> RunConfig:
    """A validated run configuration from a RunConfig, plain nested data or a YAML file,
    with ``key=value`` overrides laid over it."""
    from dicelab.config import RunConfig, apply_overrides, from_dict, load_config, to_dict

    if config is None or isinstance(config, (str, Path)):
        return load_config(config, list(overrides))
    data = to_dict(config) if isinstance(config, RunConfig) else dict(config)
    return from_dict(apply_overrides(data, list(overrides)))


def train(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    resume: bool = False,
    quiet: bool = True,
) -> RunResult:
    """Train one configuration (``dicelab train``); its result.

    Args:
        config: a :class:`~dicelab.config.RunConfig`, nested data, a YAML file, or None for
            the defaults (the paper VGG on scikit-learn's digits).
        overrides: ``key=value`` strings, as ``--set``.
        out: the run folder (None: nothing is written).
        resume: continue the run folder's checkpoint.
        quiet: no line per epoch on standard error.

    Example:
        >>> import dicelab
        >>> result = dicelab.train(overrides=["train.epochs=1", "data.train_limit=64"])
        >>> result.status, result.epochs_completed
        ('completed', 1)
    """
    from dicelab.train import Trainer

    run = Trainer(_config(config, overrides), run_dir=out, log=None if quiet else stderr)
    return run.fit(resume=resume)


def search(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    out: str | Path = "runs/search",
    storage: str | None = None,
    study: str = "search",
    sampler: Literal["pso", "random", "tpe", "cmaes"] = "pso",
    genes: Sequence[str] | None = None,
    particles: int = 22,
    sparse: int = 4,
    seed: int = 0,
    trials: int | None = None,
    generations: int | None = None,
    patience: int | None = None,
    prune: Literal["none", "median"] = "none",
    cut_threshold: float = 0.12,
    screen: int = 0,
    screen_epochs: int = 1,
    baseline_start: bool = True,
    update: Literal["synchronous", "asynchronous"] = "synchronous",
    cache: bool = False,
    workers: int = 1,
    threads: int | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Search where and how much randomness helps (``dicelab search``); the summary written to
    ``<out>/search.json`` (trial counts, the best trial with its ``settings`` in real values).

    The options are the CLI's (``dicelab search --help``), with the same defaults (the PSO
    swarm's first particle starts at the no-randomness baseline); ``config`` and
    ``overrides`` give the base configuration as for :func:`train`.
    """
    from dicelab.config import to_dict
    from dicelab.tune.search import SearchOptions, run_search

    options = SearchOptions(
        out=str(out),
        storage=storage,
        study=study,
        sampler=sampler,
        genes=list(genes) if genes is not None else None,
        particles=particles,
        sparse=sparse,
        seed=seed,
        trials=trials,
        generations=generations,
        patience=patience,
        prune=prune,
        cut_threshold=cut_threshold,
        screen=screen,
        screen_epochs=screen_epochs,
        baseline_start=baseline_start,
        update=update,
        cache=cache,
        workers=workers,
        threads=threads,
        quiet=quiet,
        config=to_dict(_config(config, overrides)),
    )
    return run_search(options)


def evaluate(
    out: str | Path = "runs/search",
    *,
    storage: str | None = None,
    study: str = "search",
    epochs: int | None = None,
    repeats: int = 5,
    workers: int = 1,
    quiet: bool = True,
) -> dict[str, Any]:
    """Retrain a search's best configuration and the no-randomness baseline ``repeats`` times
    (``dicelab evaluate``); the summary with the test-error reduction (``evaluation.json``)."""
    from dicelab.tune.evaluate import evaluate as run
    from dicelab.tune.search import options_from_study

    options = options_from_study(str(out), storage, study)
    return run(
        options, epochs=epochs, repeats=repeats, workers=workers, say=None if quiet else stderr
    )


def ablate(
    out: str | Path = "runs/search",
    *,
    storage: str | None = None,
    study: str = "search",
    epochs: int | None = None,
    repeats: int = 3,
    workers: int = 1,
    quiet: bool = True,
) -> list[AblationRow]:
    """Retrain the best configuration without each technique and each category
    (``dicelab ablate``); the rows written to ``ablation.json``."""
    from dicelab.analysis.ablation import ablate as run
    from dicelab.tune.search import options_from_study

    options = options_from_study(str(out), storage, study)
    return run(
        options, epochs=epochs, repeats=repeats, workers=workers, say=None if quiet else stderr
    )


def analyze(
    out: str | Path = "runs/search",
    *,
    storage: str | None = None,
    study: str = "search",
    importance: bool = True,
    quiet: bool = True,
) -> dict[str, Any]:
    """Correlations by optimizer, importance and error-reduction tables of a search
    (``dicelab analyze``); the summary written to ``analysis/analysis.json``."""
    from dicelab.analysis.analyze import analyze as run
    from dicelab.tune.search import options_from_study

    options = options_from_study(str(out), storage, study)
    return run(options, importance=importance, say=None if quiet else stderr)


def report(
    out: str | Path = "runs/search",
    *,
    storage: str | None = None,
    study: str = "search",
    title: str | None = None,
) -> Path:
    """Write the self-contained HTML report of a results folder (``dicelab report``); its
    path."""
    from dicelab.reports.html import build_report

    return build_report(out, study=study, storage=storage, title=title)
