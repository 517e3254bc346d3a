"""``dicelab search``: a randomness search on Optuna, with local workers and shared storage.

A search is one Optuna study in one storage. The default storage is a journal file inside the
search folder, and any number of ``dicelab search`` processes, on any machines that reach the
storage, cooperate on the same study. The study remembers how it was defined: the base
configuration, the genes and the sampler settings. Running the command again with the same
settings continues it, and different settings are refused with the difference named.

The stopping rules are checked after every trial: a budget of finished trials, a number of
swarm generations, or a number of generations without a better best (PSO only). With
``screen`` > 0 the authors' multi-fidelity variant runs first. A screening study
(``<study>-screen``) evaluates that many sparse random particles for ``screen_epochs`` epochs,
and the best ``particles`` of them become the main swarm's starting positions. ``screen_reset``
holds more genes at their baseline in that screening population (the authors hold the two
schedule genes there: :data:`AUTHORS_SCREEN_RESET`).
"""

from __future__ import annotations

import functools
import logging
import math
import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from dicelab import _atomic, paper_space
from dicelab._progress import Progress, stderr
from dicelab.config import UNHASHED, RunConfig, config_hash, from_dict, to_dict, to_yaml
from dicelab.data import load_data
from dicelab.exceptions import ConfigError, DicelabError
from dicelab.paper_space import readable
from dicelab.tracking import check_trackers, open_trackers
from dicelab.tune._health import chance_warning
from dicelab.tune._pso import _compat as compat
from dicelab.tune._pso._workers import fail_dead_workers
from dicelab.tune._pso.sampler import GENERATION, NO_RETRY, PARTICLE, PSOSampler, SwarmFinished
from dicelab.tune._workers import exit_with_parent
from dicelab.tune.objective import SearchObjective, SearchSpace, configure
from dicelab.tune.storage import describe_storage, open_storage

_log = logging.getLogger(__name__)

JOURNAL = "study.journal"
SUMMARY = "search.json"
BEST_CONFIG = "best.yaml"

#: System attribute of a trial that evaluated nothing because it started after a stopping rule
#: was met (other workers had used up the budget, or the swarm had stopped); its value is why.
UNUSED = "dicelab:unused"

#: Study attribute: the trackers (``log``) of the search's latest run, which ``evaluate`` and
#: ``ablate`` use for their retraining runs. Not part of the study's definition.
TRACKERS_ATTR = "dicelab:log"


def counts(trial: FrozenTrial) -> bool:
    """Whether ``trial`` used up one trial of a budget: it ended with a result (complete,
    pruned, or failed for a reason of its own, such as divergence). A trial whose worker was
    killed or interrupted is evaluated again instead, and an unused trial evaluated nothing."""
    if UNUSED in trial.system_attrs:
        return False
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and bool(trial.user_attrs.get(NO_RETRY))


@dataclass
class SearchOptions:
    """Everything that defines a search (stored with the study) and how to run it (not)."""

    out: str = "runs/search"
    storage: str | None = None  # default: <out>/study.journal
    study: str = "search"
    sampler: Literal["pso", "random", "tpe", "cmaes"] = "pso"
    genes: list[str] | None = None  # default: the paper's 22
    particles: int = 22
    sparse: int = 4  # optional genes on per starting particle; 0 = uniform start
    seed: int = 0
    trials: int | None = None
    generations: int | None = None
    patience: int | None = None
    prune: Literal["none", "median"] = "none"
    cut_threshold: float = 0.12
    screen: int = 0
    screen_epochs: int = 1
    # Genes held at their baseline in the screening population besides the optional genes
    # the sparse start resets (the authors' screening also resets lr_schedule and
    # batch_schedule; see :data:`AUTHORS_SCREEN_RESET`).
    screen_reset: list[str] = field(default_factory=list)
    baseline_start: bool = False  # PSO: the first particle starts at the no-randomness baseline
    # PSO: "asynchronous" moves the particles of a generation one after the other, each from
    # the global best including the particles before it (the authors' update); "synchronous"
    # moves a generation at once, so its particles train side by side.
    update: Literal["synchronous", "asynchronous"] = "synchronous"
    cache: bool = False  # PSO: a position whose configuration was trained is not retrained
    workers: int = 1
    threads: int | None = None
    quiet: bool = False  # no progress line per finished trial
    config: dict[str, Any] = field(default_factory=dict)  # the base RunConfig, as data

    def definition(self) -> dict[str, Any]:
        """What the study's results depend on; two runs on one study must agree on it."""
        keys = ("sampler", "particles", "sparse", "seed", "prune", "cut_threshold")
        definition = {
            **{k: getattr(self, k) for k in keys},
            "screen": [self.screen, self.screen_epochs] if self.screen else None,
            "space": self.space().describe(),
            # Trackers (`log`) record a search, they do not define it: a study continues
            # whichever trackers a run names.
            "config": {k: v for k, v in self.config.items() if k not in UNHASHED},
        }
        if self.baseline_start:  # only when set, so studies made before it still match
            definition["baseline_start"] = True
        if self.update != "synchronous":  # likewise
            definition["update"] = self.update
        if self.cache:  # likewise
            definition["cache"] = True
        if self.screen and self.screen_reset:  # likewise
            definition["screen_reset"] = sorted(self.screen_reset)
        return definition

    def base(self) -> RunConfig:
        return from_dict(self.config)

    def space(self) -> SearchSpace:
        base = self.base()
        images, _ = _data_facts(base.data.name, base.data.root)
        return SearchSpace.paper(self.genes, images=images)


@functools.cache
def _data_facts(name: str, root: str) -> tuple[bool, int]:
    """Whether a dataset's inputs are images, and its number of classes. The dataset is read
    once per process: :meth:`SearchOptions.space` is asked for every study opened and every
    summary written."""
    data = load_data(name, root=root, download=False)
    return len(data.input_shape) == 3, data.num_classes


#: Genes the authors' multi-fidelity screening ("pso-saga" cell of
#: ``.ipynb_checkpoints/VGG Fashion-Copy1-checkpoint.ipynb``) keeps random besides the four
#: sparse optional genes: shuffle, weight init, optimizer, lr and batch, indices
#: ``[0, 8, 14, 15, 17]``. The plain PSO cell keeps 16 and 18 (the schedule genes) random
#: too, as dicelab's sparse start does; the screening holds them at their baseline (constant).
AUTHORS_SCREEN_RESET = ("lr_schedule", "batch_schedule")


def usable_cpus() -> int:
    """How many CPUs this process may run on: its affinity set where the platform has one
    (``taskset -c 0 ...`` gives 1), else ``os.cpu_count()``. Each worker's torch threads are
    this divided among the workers."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def validate(options: SearchOptions) -> None:
    """Check the options before anything is written."""
    if not (math.isfinite(options.cut_threshold) and 0 <= options.cut_threshold <= 1):
        raise ConfigError(
            "--cut-threshold",
            options.cut_threshold,
            "must lie in [0, 1] (a validation accuracy; 0 turns the cut off)",
        )
    base = options.base()
    if base.data.split != "search":
        raise ConfigError("data.split", base.data.split, "a search trains with split=search")
    if options.sampler != "pso" and options.trials is None:
        raise ConfigError("--trials", None, f"the {options.sampler} sampler needs a trial budget")
    if options.sampler == "pso" and not (options.trials or options.generations):
        raise ConfigError(
            "--trials", None, "give a budget: --trials N and/or --generations G (PSO)"
        )
    for name in ("particles", "workers", "screen_epochs"):
        value = getattr(options, name)
        if value < 1:
            raise ConfigError(f"--{name.replace('_', '-')}", value, "must be >= 1")
    for name in ("trials", "generations", "patience", "threads"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name}", value, "must be >= 1")
    if options.patience is not None and options.sampler != "pso":
        raise ConfigError("--patience", options.patience, "applies to the pso sampler only")
    if options.update not in ("synchronous", "asynchronous"):
        raise ConfigError("--update", options.update, "synchronous or asynchronous")
    for name, on in (("--update", options.update != "synchronous"), ("--cache", options.cache)):
        if on and options.sampler != "pso":
            raise ConfigError(name, options.sampler, "applies to the pso sampler only")
    if options.cache and not (options.generations or options.patience):
        raise ConfigError(
            "--cache",
            True,
            "needs --generations or --patience: a swarm that only revisits trained "
            "configurations would never train again",
        )
    if not 0 <= options.sparse:
        raise ConfigError("--sparse", options.sparse, "must be >= 0")
    if options.screen < 0:
        raise ConfigError("--screen", options.screen, "must be >= 0")
    genes = options.genes or [g.param for g in paper_space.GENES]
    for name in options.screen_reset:
        if name not in genes:
            raise ConfigError(
                "screen_reset", name, f"must name searched genes: {', '.join(genes)}"
            )
    check_trackers(base.log)  # a missing tracker package stops here, before any trial


def storage_spec(out: str | Path, storage: str | None) -> str:
    """The storage of a search: ``storage`` when given, else the journal file in ``out``."""
    return storage or str(Path(out) / JOURNAL)


def open_study(options: SearchOptions, name: str | None = None) -> optuna.Study:
    """Create the study, or load it after checking it was defined the same way."""
    name = name or options.study
    spec = storage_spec(options.out, options.storage)
    storage = open_storage(spec)
    definition = options.definition()
    study = optuna.create_study(
        storage=storage, study_name=name, direction="maximize", load_if_exists=True
    )
    stored = study.user_attrs.get("dicelab")
    if stored is None:
        if study.trials:
            raise ConfigError(
                "--study",
                name,
                f"exists in {describe_storage(spec)} and was not made by dicelab search; "
                "choose another --study name",
            )
        study.set_user_attr("dicelab", definition)
    elif stored != definition:
        # Some keys are stored only when set: a key on either side alone differs too.
        differing = sorted(
            k for k in definition.keys() | stored.keys() if stored.get(k) != definition.get(k)
        )
        raise ConfigError(
            "--study",
            name,
            f"was created with a different search ({', '.join(differing)} differ); run it with "
            "its own settings, or name another --study",
        )
    return study


def _sampler(
    options: SearchOptions, space: SearchSpace, worker: int, initial: list[dict[str, float]]
) -> optuna.samplers.BaseSampler:
    if options.sampler == "random":
        return optuna.samplers.RandomSampler(seed=options.seed + worker)
    if options.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=options.seed + worker)
    if options.sampler == "cmaes":
        # Started from the no-randomness baseline (the centre of the authors' sparse start:
        # every optional technique off), a population the size of the swarm. Optuna 5 marks
        # x0 deprecated (to be removed in 6, which dicelab does not admit) but honours it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return optuna.samplers.CmaEsSampler(
                x0=space.baseline_params(),
                popsize=options.particles,
                seed=options.seed + worker,
            )
    return PSOSampler(
        space.distributions(),
        n_particles=options.particles,
        seed=options.seed,
        sparse_init=space.sparse_init(options.sparse) if options.sparse else None,
        initial_params=initial,
        max_generations=options.generations,
        patience=options.patience,
        raise_when_finished=True,  # a surplus trial ends unused at once, never trained
        # A trial here is a training run of unknown length; dead workers are found by
        # heartbeat (PostgreSQL) or process id (journal), so waiting on live ones is right.
        wait_timeout=None,
        update=options.update,
        cache=_run_key(options.base(), space) if options.cache else False,
    )


def _run_key(base: RunConfig, space: SearchSpace) -> Callable[[Mapping[str, Any]], str]:
    """The position cache's key of a search: the hash of the configuration a position trains.
    Every trial of a study trains with the same seed, so two positions with one configuration
    give the same result (many positions do: a technique gene below its threshold is off, the
    batch gene is rounded), and the second need not train."""

    def key(params: Mapping[str, Any]) -> str:
        return config_hash(configure(base, space, params))

    return key


def _pruner(options: SearchOptions) -> optuna.pruners.BasePruner:
    if options.prune == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


class _Stop:
    """Callback: stop the study once a budget or a swarm stopping rule is met.

    The budget counts the trials that ended with a result (:func:`counts`) plus those still
    running, so that a worker does not start a trial that another worker's running trial
    already fills; the trial numbers, which the storage hands out atomically, settle the
    rare case of two workers starting at the same instant (:meth:`surplus`).
    """

    def __init__(self, budget: int | None, sampler: optuna.samplers.BaseSampler) -> None:
        self.budget = budget
        self.sampler = sampler

    def _used(self, study: optuna.Study, below: int | None = None) -> int:
        """Trials (numbered below ``below``, if given) that used or are using the budget."""
        return sum(
            1
            for t in study.get_trials(deepcopy=False)
            if (below is None or t.number < below)
            and (counts(t) or (t.state == TrialState.RUNNING and UNUSED not in t.system_attrs))
        )

    def reached(self, study: optuna.Study) -> bool:
        """Whether the trial budget or the swarm's stopping rule is met."""
        if self.budget is not None and self._used(study) >= self.budget:
            return True
        return isinstance(self.sampler, PSOSampler) and self.sampler.finished(study)

    def surplus(self, study: optuna.Study, number: int) -> bool:
        """Whether trial ``number`` started when lower-numbered trials already filled the
        budget (another worker started one at the same instant)."""
        return self.budget is not None and self._used(study, below=number) >= self.budget

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self.reached(study):
            study.stop()


def _guarded(objective: SearchObjective, stop: _Stop) -> Any:
    """The objective, ending a trial that starts after a stopping rule was met as an unused,
    particle-less pruned trial (excluded from every count) and stopping the study."""

    def unused(trial: optuna.Trial, why: str) -> optuna.TrialPruned:
        compat.set_trial_system_attr(trial.study, compat.trial_id(trial), UNUSED, why)
        trial.study.stop()
        return optuna.TrialPruned(why)

    def run(trial: optuna.Trial) -> float:
        if stop.surplus(trial.study, trial.number):  # before the sampler claims a particle
            raise unused(trial, f"the budget of {stop.budget} trials was already used")
        try:
            return objective(trial)
        except SwarmFinished as finished:
            raise unused(trial, str(finished)) from None

    return run


def settings_text(params: dict[str, float]) -> str:
    """The genes of ``params`` that differ from the authors' baseline, in real values
    (``lr 1e-2, optimizer adam, dropout 0.2``), or ``baseline``."""
    baseline = readable({g.param: g.baseline for g in paper_space.GENES if g.param in params})
    shown = readable(params)
    changed = [f"{name} {value}" for name, value in shown.items() if value != baseline[name]]
    return ", ".join(changed) or "baseline"


class _TrialLines:
    """Callback: one progress line per trial this worker finished: which trial, the settings
    that differ from the baseline, its result, the best so far, the time so far and left."""

    def __init__(self, study: optuna.Study, total: int | None, say: Any) -> None:
        done = sum(1 for t in study.get_trials(deepcopy=False) if counts(t))
        self.progress = Progress(total, say, done=done)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if UNUSED in trial.system_attrs or self.progress.say is None:
            return
        trials = study.get_trials(deepcopy=False)
        values = [float(t.value) for t in trials if t.state == TrialState.COMPLETE and t.value]
        where = f"trial {trial.number}"
        if GENERATION in trial.system_attrs:
            where += f" (generation {trial.system_attrs[GENERATION]}, "
            where += f"particle {trial.system_attrs[PARTICLE]})"
        if trial.state == TrialState.COMPLETE:
            outcome = f"val acc {trial.value:.4f}"
            if "stopped" in trial.user_attrs:
                outcome += " (cut)"
        elif trial.state == TrialState.PRUNED:
            outcome = "pruned"
        elif NO_RETRY in trial.user_attrs:
            outcome = f"failed: {trial.user_attrs[NO_RETRY]}"
        else:
            outcome = "failed (evaluated again later)"
        best = f"best {max(values):.4f}" if values else "no best yet"
        text = f"{where}: {settings_text(trial.params)} -> {outcome}; {best}"
        self.progress.step(text, done=sum(1 for t in trials if counts(t)))


class _TrialRecords:
    """Callback: each trial this worker finished as one run of the base configuration's
    trackers (``log``), named ``<study>-trial-NNNN``, under the search folder.

    The run's hyperparameters are the trial's genes in real values (``lr: 1e-3``, as
    :func:`~dicelab.paper_space.readable` and the trial's user attributes show them) with the
    trial's number, generation and particle; its metrics are the validation accuracy of each
    epoch (the values the trial reported) and the score (``result/value``). A trial never
    trains in a folder of its own, so this is the only record beside the study's storage.
    """

    def __init__(self, names: list[str], out: Path) -> None:
        self.names = names
        self.out = out

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if UNUSED in trial.system_attrs:
            return
        try:
            self._record(study, trial)
        except Exception as err:  # a tracker never stops a search (the storage is the record)
            _log.warning("dicelab: trial %d was not logged to trackers: %r", trial.number, err)

    def _record(self, study: optuna.Study, trial: FrozenTrial) -> None:
        name = f"{study.study_name}-trial-{trial.number:04d}"
        trackers = open_trackers(self.names, self.out, run=name, experiment=study.study_name)
        params: dict[str, str | int | float | bool] = dict(readable(trial.params))
        params["trial"] = trial.number
        for key in (GENERATION, PARTICLE):
            if key in trial.system_attrs:
                params[key.removeprefix("pso:")] = trial.system_attrs[key]
        trackers.start(name, params)
        for epoch, accuracy in sorted(trial.intermediate_values.items()):
            trackers.log_metrics({"val_acc": accuracy}, epoch)
        result = {
            k: v for k, v in trial.user_attrs.items() if k in ("epochs_completed", "seconds")
        }
        if trial.value is not None:
            result["value"] = trial.value
        trackers.log_result(result)
        status = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "stopped"}
        trackers.end(status.get(trial.state, "failed"))


def _total(options: SearchOptions, particles: int) -> int | None:
    """How many trials the stopping rules allow at most (None: unknown, patience alone)."""
    limits = [options.trials] if options.trials else []
    if options.sampler == "pso" and options.generations:
        limits.append(options.generations * particles)
    return min(limits) if limits else None


def _optimize(
    options: SearchOptions,
    study: optuna.Study,
    sampler: optuna.samplers.BaseSampler,
    base: RunConfig,
    space: SearchSpace,
    budget: int | None,
    total: int | None,
) -> None:
    study.sampler = sampler
    study.pruner = _pruner(options)
    objective = SearchObjective(
        base, space, prune=options.prune != "none", cut_threshold=options.cut_threshold
    )
    stop = _Stop(budget, sampler)
    if stop.reached(study):
        return
    lines = _TrialLines(study, total, None if options.quiet else stderr)
    callbacks: list[Any] = [stop, lines]
    if base.log:
        callbacks.append(_TrialRecords(list(base.log), Path(options.out)))
    study.optimize(_guarded(objective, stop), callbacks=callbacks)


def _screen_population(options: SearchOptions, space: SearchSpace) -> list[dict[str, float]]:
    """The screening particles' starting positions when ``screen_reset`` holds genes at
    their baseline: the sparse start (every gene uniform in its bounds, then all but
    ``sparse`` of the optional genes at their baseline; ``sparse`` = 0 keeps them all) with
    the ``screen_reset`` genes at their baseline as well. Drawn from ``seed`` alone, so every
    worker builds the same population; it replaces the sampler's own start."""
    rng = np.random.default_rng([options.seed, 1])
    baseline = space.baseline_params()
    sparse = space.sparse_init(options.sparse)
    population = []
    for _ in range(options.screen):
        params = {n: float(rng.uniform(d.low, d.high)) for n, d in space.distributions().items()}
        if options.sparse:
            kept = rng.choice(len(sparse.optional), min(sparse.k, len(sparse.optional)), False)
            for j, name in enumerate(sparse.optional):
                if j not in kept:
                    params[name] = baseline[name]
        params.update({name: baseline[name] for name in options.screen_reset})
        population.append(params)
    return population


def screened_starts(options: SearchOptions, study: optuna.Study) -> list[dict[str, float]]:
    """The best ``particles`` screened positions, best first (ties: lower trial number)."""
    done = [t for t in study.get_trials(states=(TrialState.COMPLETE,))]
    done.sort(key=lambda t: (-float(t.value or 0.0), t.number))
    return [dict(t.params) for t in done[: options.particles]]


def swarm_starts(options: SearchOptions, space: SearchSpace) -> list[dict[str, float]]:
    """The main swarm's given starting positions: the baseline first when
    ``baseline_start``, then the best screened positions (after the screening). Every
    sampler that recomputes the swarm (the workers', the summary's) must be given them, or
    it rebuilds another first generation."""
    starts = []
    if options.baseline_start:
        starts.append(space.baseline_params())
    if options.screen:
        starts += screened_starts(options, open_study(options, f"{options.study}-screen"))
    return starts


def work(options: SearchOptions, worker: int = 0) -> None:
    """One worker: screen (if asked), then search until a stopping rule is met."""
    import torch

    threads = options.threads or max(1, usable_cpus() // options.workers)
    torch.set_num_threads(threads)
    # Optuna's own warnings about failed trials carry tracebacks (of errors dicelab reports
    # in one line itself) and repeat every parameter; the objective says what went wrong.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    base = options.base()
    space = options.space()
    if options.screen:
        screen = open_study(options, f"{options.study}-screen")
        screen_options = SearchOptions(**{**asdict(options), "particles": options.screen})
        starts = _screen_population(options, space) if options.screen_reset else []
        screen_sampler = _sampler(screen_options, space, worker, starts)
        assert isinstance(screen_sampler, PSOSampler)
        screen_sampler.max_generations, screen_sampler.patience = 1, None
        data = to_dict(base)
        data["train"]["epochs"] = options.screen_epochs
        short = from_dict(data)
        _optimize(options, screen, screen_sampler, short, space, None, options.screen)
    study = open_study(options)
    sampler = _sampler(options, space, worker, swarm_starts(options, space))
    _optimize(
        options, study, sampler, base, space, options.trials, _total(options, options.particles)
    )


def _user_error(exc: BaseException) -> DicelabError | None:
    """The dicelab error behind ``exc``, if any. Optuna replaces an error raised while it
    records a trial's result (a journal on a full disk, say) with an AssertionError of its
    own, keeping ours as the context."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, DicelabError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _work(options: SearchOptions, worker: int = 0) -> None:
    """:func:`work`, with a dicelab error that Optuna wrapped raised as itself."""
    try:
        work(options, worker)
    except Exception as exc:
        error = _user_error(exc)
        if error is None or error is exc:
            raise
        raise error from None


class WorkerError(DicelabError):
    """A local worker process stopped on a dicelab error; its message and exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _worker_process(options: SearchOptions, worker: int, errors: Any, parent: int) -> None:
    """The body of a local worker process: search, report a dicelab error to the parent
    through ``errors`` instead of a traceback, and stop if the parent dies."""
    exit_with_parent(parent)
    try:
        _work(options, worker)
    except DicelabError as err:
        errors.put((str(err), err.exit_code))
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


def run_search(options: SearchOptions) -> dict[str, Any]:
    """Run (or continue) a search with ``options.workers`` local processes; the summary."""
    validate(options)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in [options.study] + ([f"{options.study}-screen"] if options.screen else []):
        recovered = fail_dead_workers(open_study(options, name))
        if recovered:
            _log.warning("%s: %d trials of killed workers marked failed", name, recovered)
    open_study(options).set_user_attr(TRACKERS_ATTR, list(options.config.get("log", [])))
    if options.workers > 1 and options.update == "asynchronous":
        _log.warning(
            "asynchronous PSO updates: after the first generation one particle trains at a "
            "time, so %d of the %d workers wait (use --update synchronous to train a "
            "generation side by side)",
            options.workers - 1,
            options.workers,
        )
    if options.workers == 1:
        _work(options)
    else:
        context = multiprocessing.get_context("spawn")
        errors = context.SimpleQueue()
        processes = [
            context.Process(
                target=_worker_process, args=(options, i, errors, os.getpid()), name=f"worker-{i}"
            )
            for i in range(options.workers)
        ]
        for p in processes:
            p.start()
        for p in processes:
            p.join()
        if not errors.empty():  # the same error usually stops every worker: say it once
            message, code = errors.get()
            raise WorkerError(message, code)
        failed = [p.name for p in processes if p.exitcode != 0]
        if failed:
            _log.warning("workers ended with an error: %s", ", ".join(failed))
    return summarize(options)


def summarize(options: SearchOptions) -> dict[str, Any]:
    """Write ``search.json`` and the best configuration (``best.yaml``); return the summary."""
    study = open_study(options)
    trials = [t for t in study.get_trials(deepcopy=False) if UNUSED not in t.system_attrs]
    states = {state.name.lower(): 0 for state in TrialState}
    for t in trials:
        states[t.state.name.lower()] += 1
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    summary: dict[str, Any] = {
        "study": options.study,
        "storage": describe_storage(storage_spec(options.out, options.storage)),
        "trials": states,
        "counted": sum(1 for t in trials if counts(t)),
        "best": None,
    }
    if completed:
        best = max(completed, key=lambda t: (float(t.value or 0.0), -t.number))
        config = configure(options.base(), options.space(), best.params)
        summary["best"] = {
            "trial": best.number,
            "value": best.value,
            "params": best.params,
            "settings": readable(best.params),
        }
        _atomic.write_text(Path(options.out) / BEST_CONFIG, to_yaml(config))
    else:
        summary["no_best"] = _why_no_best(trials)
    base = options.base()
    warning = chance_warning(
        [float(t.value) for t in completed if t.value is not None],
        _data_facts(base.data.name, base.data.root)[1],
        options.cut_threshold,
    )
    if warning is not None:
        summary["warning"] = warning
    if options.sampler == "pso":
        space = options.space()
        sampler = _sampler(options, space, 0, swarm_starts(options, space))
        assert isinstance(sampler, PSOSampler)
        summary["generation"] = sampler.generation(study)
        swarm_best = sampler.best(study)[0]  # nan until the first generation is complete
        summary["swarm_best"] = swarm_best if math.isfinite(swarm_best) else None
    _atomic.write_json(Path(options.out) / SUMMARY, summary)
    return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """A search's summary (``search.json``) as a few readable lines for the terminal."""
    states = summary["trials"]
    lines = [
        f"search {summary['study']!r}: {summary['counted']} trials counted "
        f"({states['complete']} complete, {states['pruned']} pruned, {states['fail']} failed)"
    ]
    if "generation" in summary:
        swarm = summary["swarm_best"]
        lines[0] += f"; the swarm is in generation {summary['generation']}"
        if swarm is None:
            lines[0] += " (no generation complete yet)"
    if "warning" in summary:
        lines.append(f"WARNING: {summary['warning']}")
    best = summary["best"]
    if best is None:
        lines.append(f"no best configuration: {summary['no_best']}")
        return lines
    settings = settings_text(best["params"])
    lines.append(f"best: trial {best['trial']}, validation accuracy {best['value']:.4f}")
    lines.append(f"  {settings} (every other setting as in the base configuration)")
    return lines


def _why_no_best(trials: list[FrozenTrial]) -> str:
    """One sentence on why no trial completed, for the summary and the command's message."""
    if not trials:
        return "no trial ran"
    failed = [t for t in trials if t.state == TrialState.FAIL]
    reasons = sorted({str(t.user_attrs[NO_RETRY]) for t in failed if NO_RETRY in t.user_attrs})
    parts = [f"{len(trials)} trials, none completed"]
    if failed:
        parts.append(f"{len(failed)} failed")
    pruned = sum(1 for t in trials if t.state == TrialState.PRUNED)
    if pruned:
        parts.append(f"{pruned} pruned")
    text = ", ".join(parts)
    if reasons:
        text += f" (first reason: {reasons[0]})"
    return text


def options_from_study(out: str, storage: str | None, study: str) -> SearchOptions:
    """The options of an existing search, read back from its study (for ``evaluate``)."""
    spec = storage_spec(out, storage)
    if storage is None and not Path(spec).is_file():
        raise ConfigError("--out", out, f"holds no search ({spec} does not exist)")
    handle = open_storage(spec)
    names = [s.study_name for s in optuna.get_all_study_summaries(handle)]
    if study not in names:
        raise ConfigError(
            "--study",
            study,
            f"is not in {describe_storage(spec)}; studies there: {', '.join(names) or 'none'}",
        )
    attrs = optuna.load_study(study_name=study, storage=handle).user_attrs
    stored = attrs.get("dicelab")
    if stored is None:
        raise ConfigError("--study", study, "was not made by dicelab search")
    screen = stored["screen"] or [0, 1]
    return SearchOptions(
        out=out,
        storage=storage,
        study=study,
        sampler=stored["sampler"],
        genes=list(stored["space"]),
        particles=stored["particles"],
        sparse=stored["sparse"],
        seed=stored["seed"],
        prune=stored["prune"],
        cut_threshold=stored["cut_threshold"],
        screen=screen[0],
        screen_epochs=screen[1],
        baseline_start=bool(stored.get("baseline_start", False)),
        screen_reset=list(stored.get("screen_reset", [])),
        update=stored.get("update", "synchronous"),
        cache=bool(stored.get("cache", False)),
        config={**stored["config"], "log": list(attrs.get(TRACKERS_ATTR, []))},
    )
