"""PSOSampler: a particle swarm whose state lives in the study's storage.

The swarm advances in generations. Generation ``g`` has ``n_particles`` positions, and each
one is evaluated by one trial. The trial is tagged in its system
attributes with ``pso:generation``, ``pso:particle`` and ``pso:position`` (the real
position), plus the host and process that claimed it. Once every particle of generation ``g``
has a result, any worker can compute generation ``g + 1`` from the tagged trials alone:

- the random numbers come from a generator seeded by (seed, generation);
- a particle's result is its **lowest-numbered** claiming trial that counts.

With ``update="asynchronous"`` (the authors' update) the particles of a generation after the
first move one at a time instead: particle ``i`` moves once particles ``0 … i−1`` of its
generation have results, from the global best that includes them, with random numbers seeded
by (seed, generation, i). It is still computed from the tagged trials alone. With ``cache``, a
particle whose position (or its key) matches one evaluated earlier takes that result and is
never handed to a trial.

The swarm is therefore a pure function of the storage. Several processes on one or many
machines share one swarm, a study resumes after every worker was killed, and the results do
not depend on the order in which trials finish. A worker that finds every particle of the
current generation claimed waits (polling the storage) until the generation completes, for at
most ``wait_timeout`` seconds without progress.

The search space is either declared (``PSOSampler(space)``) or, define-by-run, inferred from
the first complete trial (``PSOSampler()``): that trial's parameters and distributions become
the swarm's dimensions, stored in the study so that every worker uses the same ones.

How each kind of trial counts:

- COMPLETE: its value.
- PRUNED: fitness −∞. The particle moves on, but the pruned position never becomes a best.
- FAIL with the user attribute ``pso_no_retry``: fitness −∞. dicelab sets this attribute for
  diverged runs.
- Any other FAIL (an exception, a killed worker, a stale heartbeat): retried. The particle is
  claimed again by a later trial at the same position. After ``max_retries`` failures it gets
  −∞.
- RUNNING or WAITING: the particle is busy. A heartbeat retry (RDBStorage) copies the tags, so
  the retry is the same particle; it is counted once.
- Duplicates: two processes can claim the same particle in the same instant (threads of one
  process claim one at a time). Both run, and the
  lower trial number counts.
- Untagged trials (enqueued by hand, made by another sampler, or run before a define-by-run
  space was known): ignored by the swarm.
- A claimed trial evaluated elsewhere than its particle's position (a fixed or enqueued
  parameter, a parameter asked with another range): the swarm learns the point evaluated; a
  value the declared distribution cannot hold (outside its range, not one of its choices)
  makes the result unusable (fitness −∞, like a pruned one). Either way with one warning.

Each claimed trial also records its worker's host and process id. On storages without a
heartbeat (the journal file), a waiting worker fails the RUNNING trials whose process on this
host is gone, so a killed worker's particle is retried.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from . import _compat as compat
from ._swarm import Coefficients, Encoding, Swarm, advance, initial_swarm, move, update_bests
from ._workers import fail_dead_workers, record_worker, this_thread_holds_all, worker_of

_log = logging.getLogger(__name__)

GENERATION = "pso:generation"
PARTICLE = "pso:particle"
POSITION = "pso:position"
_CLAIM_ATTEMPTS = 5
_CLAIM_LOCK = threading.Lock()  # one claim at a time per process (see _claim_free_particle)

#: System attribute of a trial that evaluated the swarm's best after it stopped (no particle).
EXTRA = "pso:extra"

#: User attribute: a failed trial carrying it counts as evaluated (fitness −∞), not retried.
NO_RETRY = "pso_no_retry"

#: Study system attribute: the search space inferred from the first complete trial.
SPACE = "pso:space"


def _same_value(a: Any, b: Any) -> bool:
    """Whether two parameter values are the same (floats up to rounding)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def _single_objective(study: optuna.Study) -> None:
    """Refuse a multi-objective study, whatever the sampler is asked first."""
    if len(study.directions) > 1:
        raise ValueError("PSOSampler supports single-objective studies only")


class SwarmFinished(optuna.exceptions.OptunaError):
    """Raised when a trial asks for a particle after the swarm's stopping rule was met
    (``max_generations`` or ``patience``); the trial gets no particle."""


class SwarmWaitTimeout(optuna.exceptions.OptunaError):
    """Raised when a trial waited ``wait_timeout`` seconds for a free particle while the
    trials holding every particle of the generation made no progress; the trial gets no
    particle (and fails), the swarm is unchanged."""


@dataclass(frozen=True)
class SparseInit:
    """The authors' sparse start: each particle keeps ``k`` of the ``optional`` parameters
    random and sets the others to their ``baseline`` value (technique off)."""

    optional: tuple[str, ...]
    baseline: Mapping[str, Any]
    k: int = 4


@dataclass
class _View:
    """Where the swarm stands: the open generation, its positions, which particles are free,
    and whether the busy trials are the last of the generation (no particle is left to hand
    out before they finish)."""

    generation: int
    swarm: Swarm
    free: list[int]
    busy: list[FrozenTrial] = field(default_factory=list)
    closing: bool = False


@dataclass
class _Start:
    """The swarm at the start of a generation and the results seen before it (the position
    cache: key → fitness)."""

    swarm: Swarm
    seen: dict[Hashable, float]


class PSOSampler(BaseSampler):
    """Particle swarm optimisation as an Optuna sampler, with the swarm kept in storage.

    Global-best topology, synchronous generations (or asynchronous updates, see ``update``),
    r1 and r2 drawn per dimension, velocity clamped to ``±velocity_clamp·range``, positions
    clipped to the bounds, uniform start.
    See the module docstring for how trials map to particles and how failures count, and
    :mod:`dicelab.tune._pso._swarm` for how parameters are encoded.

    Args:
        search_space: every parameter the swarm moves (name → distribution). The objective may
            ask for others; those are sampled at random. ``None`` (define-by-run): the
            parameters of the study's first complete trial, which is itself sampled at random
            and stays outside the swarm.
        n_particles: particles per generation.
        inertia, cognitive, social: w, c1, c2 (defaults: 0.7298, 1.49618, 1.49618).
        velocity_clamp: the largest velocity, as a fraction of each dimension's range.
        seed: makes the swarm reproducible; every worker must use the same one. ``None``
            derives it from the study name.
        sparse_init: start with most optional parameters at their baseline.
        initial_params: starting points for the first particles (e.g. the best of a
            screening study); the rest start uniformly at random.
        max_retries: failures of one particle retried before it counts as −∞.
        max_generations: hand out no particle of generation ``max_generations`` or later.
        patience: stop handing out particles after this many complete generations without
            a better global best.
        poll_interval: seconds between storage polls while waiting for a generation.
        wait_timeout: the longest a trial waits for a free particle while no trial of the
            generation finishes; then it raises :class:`SwarmWaitTimeout`, naming the trials
            it waited for. ``None`` waits as long as they run (dead workers are still
            detected: by the heartbeat on RDB storages, by process id on this host).
        raise_when_finished: raise :class:`SwarmFinished` for a trial that asks for a
            particle once a stopping rule is met (default: evaluate the best position).
        update: ``"synchronous"`` (default): a generation moves at once, from the bests of
            the previous generations, so all its particles are evaluated side by side.
            ``"asynchronous"``: the particles of a generation move one after the other, each
            reading the global best that includes the results of the particles before it (the
            update of Altarabichi et al.'s ``Swarm.optimize``). After the first generation
            only one particle can be evaluated at a time; other workers wait.
        cache: reuse the result of a position already evaluated instead of handing it out
            again (the authors cache by position). ``True`` keys a position by its decoded
            parameter values; a callable keys it by its return value for those parameters
            (e.g. the training configuration they make). A cache hit counts for its particle
            exactly as the earlier result, and creates no trial. Use it for deterministic
            objectives, where a repeat would give the same value. Needs ``max_generations`` or
            ``patience``: a swarm that only revisits evaluated positions would never need
            another trial.

    When a stopping rule is met, the sampler stops the study (``study.stop()``) after the
    trial that met it, so a plain ``study.optimize(objective, n_trials=...)`` ends cleanly: no
    exception, no failed trial. A trial that still asks for a particle after that (another
    thread or process was already starting one) is given the swarm's best position, tagged
    ``pso:extra``, and does not feed the swarm. With ``raise_when_finished=True`` such a trial
    raises :class:`SwarmFinished` instead (dicelab's search does this so that it never
    trains a surplus trial).

    When more trials are open than particles in one thread (``study.ask()`` several times
    before any ``tell``), waiting could never end: the extra trial evaluates a random point,
    tagged ``pso:extra``, outside the swarm, with a warning.

    Example:
        >>> import optuna
        >>> space = {"x": optuna.distributions.FloatDistribution(-5, 5)}
        >>> sampler = PSOSampler(space, n_particles=4, seed=0)
        >>> study = optuna.create_study(sampler=sampler)
        >>> study.optimize(lambda t: t.suggest_float("x", -5, 5) ** 2, n_trials=20)
        >>> sampler.generation(study)
        5

        Stopping after three generations ends ``optimize`` cleanly, whatever ``n_trials``:

        >>> sampler = PSOSampler(space, n_particles=4, seed=0, max_generations=3)
        >>> study = optuna.create_study(sampler=sampler)
        >>> study.optimize(lambda t: t.suggest_float("x", -5, 5) ** 2, n_trials=100)
        >>> len(study.trials), {t.state.name for t in study.trials}
        (12, {'COMPLETE'})
    """

    def __init__(
        self,
        search_space: Mapping[str, BaseDistribution] | None = None,
        *,
        n_particles: int = 20,
        inertia: float = 0.7298,
        cognitive: float = 1.49618,
        social: float = 1.49618,
        velocity_clamp: float = 0.2,
        seed: int | None = None,
        sparse_init: SparseInit | None = None,
        initial_params: Sequence[Mapping[str, Any]] = (),
        max_retries: int = 2,
        max_generations: int | None = None,
        patience: int | None = None,
        poll_interval: float = 1.0,
        wait_timeout: float | None = 3600.0,
        raise_when_finished: bool = False,
        update: Literal["synchronous", "asynchronous"] = "synchronous",
        cache: bool | Callable[[Mapping[str, Any]], Hashable] = False,
    ) -> None:
        if search_space is not None and not search_space:
            raise ValueError("PSOSampler needs a non-empty search_space (or None: define-by-run)")
        if n_particles < 1:
            raise ValueError(f"n_particles must be >= 1, got {n_particles}")
        if not 0 < velocity_clamp:
            raise ValueError(f"velocity_clamp must be > 0, got {velocity_clamp}")
        if wait_timeout is not None and not wait_timeout >= 0:
            raise ValueError(f"wait_timeout must be >= 0 or None, got {wait_timeout}")
        if update not in ("synchronous", "asynchronous"):
            raise ValueError(f"update must be 'synchronous' or 'asynchronous', got {update!r}")
        if cache is not False and max_generations is None and patience is None:
            raise ValueError("cache needs a stopping rule: max_generations or patience")
        self._declared = None if search_space is None else Encoding.of(search_space)
        self.n_particles = n_particles
        self.coefficients = Coefficients(inertia, cognitive, social, velocity_clamp)
        self.seed = seed
        self.sparse_init = sparse_init
        if sparse_init is not None:
            if search_space is None:
                raise ValueError("sparse_init needs a declared search_space")
            unknown = [n for n in sparse_init.optional if n not in search_space]
            if unknown:
                raise ValueError(f"sparse_init names parameters not in the space: {unknown}")
        self._initial_params = [dict(p) for p in initial_params][:n_particles]
        if self._declared is not None:
            self._initial_positions(self._declared)  # refuse bad starting points at once
        self.max_retries = max_retries
        self.max_generations = max_generations
        self.patience = patience
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout
        self.raise_when_finished = raise_when_finished
        self.update = update
        self.cache = cache
        self._keys: dict[tuple[Any, ...], Hashable] = {}  # (study, *position) → cache key
        self._random = RandomSampler(seed=seed)
        self._memo: dict[tuple[str, int], _Start] = {}  # (study, generation) → its start
        self._inferred: dict[str, Encoding] = {}  # study → its define-by-run space
        self._latest: dict[str, int] = {}  # study → its latest generation computed
        self._warned: set[int] = set()  # trials said to be evaluated off their position

    # -- optuna's sampler interface -------------------------------------------------------

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        _single_objective(study)
        enc = self._encoding(study)
        return {} if enc is None else dict(zip(enc.names, enc.distributions, strict=True))

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        _single_objective(study)
        enc = self._encoding(study)
        assert enc is not None  # a non-empty relative space comes from a known encoding
        tid = compat.trial_id(trial)
        record_worker(study, tid)
        quiet = False
        claimed: tuple[int, int, np.ndarray] | None = None
        for _attempt in range(_CLAIM_ATTEMPTS):
            if claimed is not None and self._holds(study, trial.number, claimed[:2]):
                break
            view = self._claim_free_particle(study, enc, trial.number, tid, quiet)
            if view == "finished":  # the swarm has stopped: an extra evaluation of its best
                study.stop()
                compat.set_trial_system_attr(study, tid, EXTRA, True)
                swarm = self._memo[(study.study_name, self._latest.get(study.study_name, 0))].swarm
                assert swarm.gbest_x is not None  # a stopping rule needs a finished generation
                return self._complete(study, trial, enc.decode(swarm.gbest_x), search_space)
            if view == "stuck":  # every particle is held by this thread's open trials
                _log.warning(
                    "trial %d: every particle is claimed by open trials of this thread (asked "
                    "before told); it evaluates a random point that does not feed the swarm",
                    trial.number,
                )
                compat.set_trial_system_attr(study, tid, EXTRA, True)
                return self._complete(study, trial, {}, search_space)
            quiet = True
            claimed = view
        # After the last attempt a claim stands even if it is a duplicate (counted once).
        assert claimed is not None
        return self._complete(study, trial, enc.decode(claimed[2]), search_space)

    def _complete(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        params: dict[str, Any],
        search_space: Mapping[str, BaseDistribution],
    ) -> dict[str, Any]:
        """``params`` cut to the parameters Optuna asked for (a wrapper such as
        PartialFixedSampler leaves the fixed ones out), and one value for each of those: a
        parameter the swarm does not move, or whose swarm value the asked distribution cannot
        hold, is drawn at random from the asked distribution (as Optuna would at suggest time;
        the swarm then learns the point evaluated)."""
        return {
            name: params[name]
            if name in params and compat.contains(dist, params[name])
            else self._random.sample_independent(study, trial, name, dist)
            for name, dist in search_space.items()
        }

    def _claim_free_particle(
        self, study: optuna.Study, enc: Encoding, number: int, trial_id: int, quiet: bool
    ) -> tuple[int, int, np.ndarray] | Literal["finished", "stuck"]:
        """Claim a free particle of the open generation for trial ``number`` (its generation,
        index and position); ``"finished"`` (or SwarmFinished, with ``raise_when_finished``) once a
        stopping rule is met; ``"stuck"`` when every particle is held by open trials of this
        very thread, which cannot finish while it waits. Raises :class:`SwarmWaitTimeout`
        after ``wait_timeout`` seconds in which the trials holding the particles stayed the
        same.

        Within one process, reading the swarm and writing the claim happen under one lock, so
        threads sharing a sampler (``n_jobs``) never claim the same particle; across processes
        a duplicate stays possible and counts once."""
        holders: set[int] = set()
        since = time.monotonic()
        while True:
            with _CLAIM_LOCK:
                view = self._view(study, enc)
                if self._finished(view):
                    if self.raise_when_finished:
                        raise SwarmFinished(f"the swarm stopped at generation {view.generation}")
                    return "finished"
                if view.free:
                    return self._write_claim(study, trial_id, number, view)
            if this_thread_holds_all(view.busy):
                return "stuck"
            now = {t.number for t in view.busy}
            if now != holders:  # a holder finished (or was retried): the clock restarts
                holders, since = now, time.monotonic()
            elif self.wait_timeout is not None and time.monotonic() - since > self.wait_timeout:
                raise SwarmWaitTimeout(self._timeout_message(number, view))
            if not quiet:
                _log.info(
                    "generation %d: every particle is claimed; waiting for it to finish",
                    view.generation,
                )
                quiet = True
            fail_dead_workers(study, view.busy)
            time.sleep(self.poll_interval)
            # optuna fails stale heartbeat trials only when a trial starts; a waiting worker
            # must do it itself or it could wait for a dead worker forever.
            compat.fail_stale_trials(study)

    @staticmethod
    def _write_claim(
        study: optuna.Study, trial_id: int, number: int, view: _View
    ) -> tuple[int, int, np.ndarray]:
        """Tag the trial with a free particle of ``view``'s generation; (generation, particle,
        position)."""
        # Workers that wake together at a generation barrier would all take the first free
        # particle; starting from the trial number spreads them out.
        particle = view.free[number % len(view.free)]
        # Storages write attributes one at a time and other workers may read in between: the
        # generation, which marks the claim, goes last.
        for key, value in (
            (POSITION, [float(v) for v in view.swarm.x[particle]]),
            (PARTICLE, particle),
            (GENERATION, view.generation),
        ):
            compat.set_trial_system_attr(study, trial_id, key, value)
        return view.generation, particle, view.swarm.x[particle].copy()

    def _timeout_message(self, number: int, view: _View) -> str:
        """What a trial that gave up waiting says: who holds the particles and what to do."""
        held = ", ".join(
            f"{t.number} ({worker_of(t)[0] or '?'}, pid {worker_of(t)[1] or '?'})"
            for t in view.busy
        )
        return (
            f"trial {number} waited {self.wait_timeout:g} s for a free particle of generation "
            f"{view.generation}, and none of the trials holding them finished: {held}. If they "
            "are still being evaluated, give PSOSampler a longer wait_timeout (or None); if "
            "their workers are gone, mark those trials failed (study.tell(number, "
            "state=TrialState.FAIL)) and their particles are evaluated again"
        )

    @staticmethod
    def _holds(study: optuna.Study, number: int, claim: tuple[int, int]) -> bool:
        """Whether trial ``number``'s claim stands: no lower-numbered trial that is still
        running or has a result (anything but a retriable failure) claims the same particle."""
        for t in study.get_trials(deepcopy=False):
            if t.number >= number:
                break  # trials come sorted by number
            tag = (t.system_attrs.get(GENERATION), t.system_attrs.get(PARTICLE))
            retriable = t.state == TrialState.FAIL and not t.user_attrs.get(NO_RETRY)
            if tag == claim and not retriable:
                return False
        return True

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        _single_objective(study)
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        """Reseed the generator of parameters outside the swarm. The swarm itself is a pure
        function of ``seed`` and the storage, so that every worker computes the same one;
        reseeding does not change it."""
        self._random.reseed_rng()

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        """Stop the study once a stopping rule is met, as Optuna's GridSampler does when its
        grid is done. Optuna calls this before it stores the trial's state, so a trial that
        completes the last generation allowed by ``max_generations`` stops the study itself
        (with ``patience``, the trial after the rule is met is an extra one, see above)."""
        if self.max_generations is None and self.patience is None:
            return
        view = self._current(study)
        if view is None:
            return
        last = view.closing and [t.number for t in view.busy] == [trial.number]
        complete = view.generation + 1 if last else view.generation
        if self._finished(view) or (
            self.max_generations is not None and complete >= self.max_generations
        ):
            study.stop()

    # -- progress, for termination rules --------------------------------------------------

    def generation(self, study: optuna.Study) -> int:
        """The generation now being evaluated (0 while the first is under way, and while a
        define-by-run space is not yet known)."""
        view = self._current(study)
        return 0 if view is None else view.generation

    def finished(self, study: optuna.Study) -> bool:
        """Whether a stopping rule (``max_generations``, ``patience``) is met."""
        view = self._current(study)
        return view is not None and self._finished(view)

    def _finished(self, view: _View) -> bool:
        g = view.generation
        if self.max_generations is not None and g >= self.max_generations:
            return True
        # generations 0..g-1 are complete; the best last improved in improved_at
        return self.patience is not None and g - 1 - view.swarm.improved_at >= self.patience

    def best(self, study: optuna.Study) -> tuple[float, int]:
        """The swarm's best fitness so far (in the study's direction; ``nan`` before the
        first generation completes) and the generation whose results set it (−1 before)."""
        view = self._current(study)
        if view is None or view.swarm.gbest_x is None:
            return math.nan, -1
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        return sign * view.swarm.gbest_f, view.swarm.improved_at

    # -- the search space ------------------------------------------------------------------

    def _encoding(self, study: optuna.Study) -> Encoding | None:
        """The swarm's dimensions for ``study``: the declared space, or the one inferred from
        the study's first complete trial (``None`` until a trial completes)."""
        if self._declared is not None:
            return self._declared
        key = study.study_name
        if key not in self._inferred:
            stored = compat.study_system_attrs(study).get(SPACE)
            if stored is None:
                first = next(
                    iter(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))), None
                )
                if first is None or not first.distributions:
                    return None
                space = {n: distribution_to_json(d) for n, d in first.distributions.items()}
                compat.set_study_system_attr(study, SPACE, space)
                # Two workers may infer at once: everyone uses what the storage holds.
                stored = compat.study_system_attrs(study)[SPACE]
            enc = Encoding.of({n: json_to_distribution(d) for n, d in stored.items()})
            self._initial_positions(enc)
            self._inferred[key] = enc
        return self._inferred[key]

    def _initial_positions(self, enc: Encoding) -> list[np.ndarray]:
        """``initial_params`` as positions in ``enc``; a point that misses a parameter or
        holds a value outside its distribution raises ValueError."""
        positions = []
        for i, params in enumerate(self._initial_params):
            missing = [n for n in enc.names if n not in params]
            if missing:
                raise ValueError(f"initial_params[{i}] lacks {missing}")
            position = _representable(enc, params)
            if position is None:
                raise ValueError(f"initial_params[{i}] = {params} lies outside the space")
            positions.append(position)
        return positions

    # -- the swarm, recomputed from the storage -------------------------------------------

    def _seed(self, study: optuna.Study) -> int:
        if self.seed is not None:
            return self.seed
        digest = hashlib.blake2b(f"0:pso:{study.study_name}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") >> 1

    def _first_swarm(self, study: optuna.Study, enc: Encoding) -> Swarm:
        rng = np.random.default_rng([self._seed(study), 0])
        swarm = initial_swarm(enc, self.n_particles, rng, self.coefficients)
        if self.sparse_init is not None:
            sparse = self.sparse_init
            index = {name: i for i, name in enumerate(enc.names)}
            optional = [index[name] for name in sparse.optional]
            off = enc.encode({**enc.decode(swarm.x[0]), **sparse.baseline})
            for row in swarm.x:
                keep = rng.choice(len(optional), size=min(sparse.k, len(optional)), replace=False)
                for j, dim in enumerate(optional):
                    if j not in keep:
                        row[dim] = off[dim]
        for i, position in enumerate(self._initial_positions(enc)):
            swarm.x[i] = position
        swarm.pbest_x = swarm.x.copy()
        return swarm

    def _current(self, study: optuna.Study) -> _View | None:
        """The swarm's view, or ``None`` while a define-by-run space is not yet known."""
        enc = self._encoding(study)
        return None if enc is None else self._view(study, enc)

    def _view(self, study: optuna.Study, enc: Encoding) -> _View:
        key = study.study_name
        # Generations before the latest one computed are complete, and a complete generation
        # never changes (new trials only claim the open one): start from there.
        generation = self._latest.get(key, 0)
        if generation == 0 and (key, 0) not in self._memo:
            self._memo[(key, 0)] = _Start(self._first_swarm(study, enc), {})
        start = self._memo[(key, generation)]
        claims: dict[tuple[int, int], list[FrozenTrial]] = {}
        for t in study.get_trials(deepcopy=False):
            g, i = t.system_attrs.get(GENERATION), t.system_attrs.get(PARTICLE)
            if g is not None and i is not None and g >= generation:
                claims.setdefault((int(g), int(i)), []).append(t)
        while True:
            if self._finished(_View(generation, start.swarm, [])):
                # Cached generations need no trial: the walk must stop at the rule itself.
                return _View(generation, start.swarm, [])
            if self.update == "asynchronous" and generation > 0:
                walked = self._one_by_one(study, enc, generation, start, claims)
            else:
                walked = self._at_once(study, enc, generation, start, claims)
            if isinstance(walked, _View):
                return walked
            generation += 1
            start = self._memo[(key, generation)] = walked
            self._latest[key] = generation

    def _at_once(
        self,
        study: optuna.Study,
        enc: Encoding,
        generation: int,
        start: _Start,
        claims: dict[tuple[int, int], list[FrozenTrial]],
    ) -> _View | _Start:
        """A generation whose positions are all known at its start (every generation of a
        synchronous swarm, the first of an asynchronous one): its view while a particle is
        open or busy, else the start of the next generation."""
        swarm = start.swarm
        fitness = np.empty(self.n_particles)
        evaluated = swarm.x.copy()  # where each particle was evaluated
        free: list[int] = []
        busy: list[FrozenTrial] = []
        for i in range(self.n_particles):
            status, value, at, live = self._particle(study, enc, generation, i, swarm.x[i],
                                                     start.seen, claims)  # fmt: skip
            if status == "open":
                free.append(i)
            elif status == "busy":
                busy.extend(live)
            else:
                fitness[i], evaluated[i] = value, at
        if free or busy:
            return _View(generation, swarm, free, busy, closing=not free)
        seen = dict(start.seen)
        for i in range(self.n_particles):
            self._remember(seen, study, enc, evaluated[i], fitness[i])
        moved = dataclasses.replace(swarm, x=evaluated)
        if self.update == "asynchronous":  # the particles move one by one from now on
            return _Start(update_bests(moved, fitness, generation), seen)
        rng = np.random.default_rng([self._seed(study), 1, generation])
        return _Start(advance(moved, fitness, generation, enc, rng, self.coefficients), seen)

    def _one_by_one(
        self,
        study: optuna.Study,
        enc: Encoding,
        generation: int,
        start: _Start,
        claims: dict[tuple[int, int], list[FrozenTrial]],
    ) -> _View | _Start:
        """A generation of the asynchronous swarm: particle ``i`` moves once the results of
        the particles before it are in the bests, with random numbers seeded by (seed,
        generation, i). Its view at the first particle without a result, else the start of
        the next generation."""
        swarm = dataclasses.replace(start.swarm, x=start.swarm.x.copy(), v=start.swarm.v.copy())
        seen = dict(start.seen)
        last = self.n_particles - 1
        for i in range(self.n_particles):
            move(swarm, i, enc, np.random.default_rng([self._seed(study), 1, generation, i]),
                 self.coefficients)  # fmt: skip
            status, value, at, live = self._particle(study, enc, generation, i, swarm.x[i],
                                                     seen, claims)  # fmt: skip
            if status == "open":
                return _View(generation, swarm, [i])
            if status == "busy":
                return _View(generation, swarm, [], live, closing=i == last)
            swarm.x[i] = at
            fitness = np.full(self.n_particles, -math.inf)
            fitness[i] = value
            swarm = update_bests(swarm, fitness, generation)
            self._remember(seen, study, enc, at, value)
        return _Start(swarm, seen)

    def _particle(
        self,
        study: optuna.Study,
        enc: Encoding,
        generation: int,
        i: int,
        position: np.ndarray,
        seen: Mapping[Hashable, float],
        claims: dict[tuple[int, int], list[FrozenTrial]],
    ) -> tuple[str, float, np.ndarray, list[FrozenTrial]]:
        """Particle ``i`` of ``generation`` at ``position``: ("done", fitness, the position
        evaluated, []) from the cache or its claiming trials, ("busy", nan, position, live
        trials) or ("open", nan, position, [])."""
        if self.cache is not False and self._cache_key(study, enc, position) in seen:
            return "done", seen[self._cache_key(study, enc, position)], position, []
        trials = sorted(claims.get((generation, i), []), key=lambda t: t.number)
        status, value, live = self._result(trials)
        if status != "done":
            return status, math.nan, position, live
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        fitness = sign * value if math.isfinite(value) else -math.inf
        if live:  # a complete trial: the swarm learns the point it evaluated
            at = self._evaluated_at(live[0], position, enc)
            if at is None:
                return "done", -math.inf, position, []
            return "done", fitness, at, []
        return "done", fitness, position, []

    def _cache_key(self, study: optuna.Study, enc: Encoding, position: np.ndarray) -> Hashable:
        """The cache key of a position: its decoded values, or ``cache``'s key for them."""
        point = (study.study_name, *(float(v) for v in position))
        if point not in self._keys:
            params = enc.decode(position)
            self._keys[point] = (
                self.cache(params)
                if callable(self.cache)
                else tuple(params[name] for name in enc.names)
            )
        return self._keys[point]

    def _remember(
        self,
        seen: dict[Hashable, float],
        study: optuna.Study,
        enc: Encoding,
        position: np.ndarray,
        fitness: float,
    ) -> None:
        """Record a result in the position cache (the first result of a key stays)."""
        if self.cache is not False:
            seen.setdefault(self._cache_key(study, enc, position), fitness)

    def _evaluated_at(
        self, trial: FrozenTrial, position: np.ndarray, enc: Encoding
    ) -> np.ndarray | None:
        """The position ``trial`` was really evaluated at. Usually its particle's; but an
        enqueued or fixed parameter, or one asked with another range, moves the evaluation
        elsewhere, and the swarm must learn the point evaluated, not the one handed out
        (a parameter the objective never asked keeps the particle's value). ``None`` when
        the point evaluated lies outside the space: the result then teaches the swarm
        nothing."""
        handed = enc.decode(position)
        asked = {name: trial.params.get(name, handed[name]) for name in enc.names}
        if all(_same_value(asked[name], handed[name]) for name in enc.names):
            return position
        at = _representable(enc, asked)
        if trial.number not in self._warned:
            self._warned.add(trial.number)
            _log.warning(
                "trial %d was evaluated away from its particle's position (fixed, enqueued or "
                "asked with another range); %s",
                trial.number,
                "the swarm takes the point it was evaluated at"
                if at is not None
                else "that point lies outside the swarm's space, so its result is not used",
            )
        return at

    def _result(self, trials: list[FrozenTrial]) -> tuple[str, float, list[FrozenTrial]]:
        """("done", value, [the complete trial, if any]), ("busy", nan, live trials) or
        ("open", nan, []) for one particle's claiming trials in number order."""
        failures = 0
        for t in trials:
            if t.state == TrialState.COMPLETE:
                assert t.value is not None
                return "done", float(t.value), [t]
            if t.state == TrialState.PRUNED:
                return "done", math.nan, []
            if t.state == TrialState.FAIL:
                if t.user_attrs.get(NO_RETRY):
                    return "done", math.nan, []
                failures += 1
                if failures > self.max_retries:
                    return "done", math.nan, []
                continue
            return "busy", math.nan, [t]  # RUNNING or WAITING
        return "open", math.nan, []


def _representable(enc: Encoding, params: Mapping[str, Any]) -> np.ndarray | None:
    """The position of ``params`` in ``enc``, or ``None`` when a value lies outside its
    parameter's distribution (another range, a choice it does not have, another type)."""
    pairs = zip(enc.names, enc.distributions, strict=True)
    if not all(compat.contains(dist, params[name]) for name, dist in pairs):
        return None
    return enc.encode(params)
