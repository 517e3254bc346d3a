"""PSOSampler: the encoding, the swarm arithmetic, optimisation against random search, and the
storage-backed behaviour (order independence, resume, retries, duplicates, stopping rules)."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from dicelab.tune import NO_RETRY, PSOSampler, SparseInit, SwarmFinished, SwarmWaitTimeout
from dicelab.tune._pso import _compat as compat
from dicelab.tune._pso._swarm import Coefficients, Encoding, advance, initial_swarm
from dicelab.tune._pso.sampler import (
    EXTRA,
    GENERATION,
    PARTICLE,
    POSITION,
    SPACE,
    _representable,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

BOX = 5.12


def space(dims: int) -> dict[str, FloatDistribution]:
    return {f"x{i:02d}": FloatDistribution(-BOX, BOX) for i in range(dims)}


def point(trial: optuna.Trial, dims: int) -> np.ndarray:
    return np.array([trial.suggest_float(f"x{i:02d}", -BOX, BOX) for i in range(dims)])


def sphere(dims: int):
    return lambda trial: float(np.sum(point(trial, dims) ** 2))


def rastrigin(dims: int):
    def f(trial: optuna.Trial) -> float:
        x = point(trial, dims)
        return float(10 * dims + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)))

    return f


def positions(study: optuna.Study) -> dict[tuple[int, int], list[float]]:
    """(generation, particle) → position of the trials that carry one."""
    return {
        (t.system_attrs[GENERATION], t.system_attrs[PARTICLE]): t.system_attrs[POSITION]
        for t in study.trials
        if GENERATION in t.system_attrs
    }


# -- encoding and arithmetic ----------------------------------------------------------------


def test_every_distribution_round_trips_through_its_encoding() -> None:
    enc = Encoding.of(
        {
            "f": FloatDistribution(-1.0, 2.0),
            "flog": FloatDistribution(1e-5, 1e-1, log=True),
            "fstep": FloatDistribution(0.0, 1.0, step=0.25),
            "i": IntDistribution(128, 1024),
            "ilog": IntDistribution(1, 1000, log=True),
            "istep": IntDistribution(0, 10, step=2),
            "c": CategoricalDistribution(["sgd", "momentum", "adam"]),
        }
    )
    values = {
        "f": 0.3,
        "flog": 3e-4,
        "fstep": 0.75,
        "i": 300,
        "ilog": 37,
        "istep": 6,
        "c": "momentum",
    }
    decoded = enc.decode(enc.encode(values))
    assert decoded["flog"] == pytest.approx(3e-4)
    assert decoded["f"] == pytest.approx(0.3)
    assert {k: v for k, v in decoded.items() if k not in ("f", "flog")} == {
        k: v for k, v in values.items() if k not in ("f", "flog")
    }
    # every corner of the box decodes inside the distributions
    for corner in (enc.low, enc.high):
        got = enc.decode(corner)
        assert got["i"] in (128, 1024) and got["c"] in ("sgd", "adam") and got["istep"] in (0, 10)
    # each integer owns an equal share of its interval
    assert enc.decode(np.where(np.array(enc.names) == "i", 128.49, enc.low))["i"] == 128


def test_a_step_moves_by_the_formula_and_stays_in_bounds() -> None:
    enc = Encoding.of(space(5))
    coef = Coefficients()
    rng = np.random.default_rng(0)
    swarm = initial_swarm(enc, 8, rng, coef)
    fitness = -np.sum(swarm.x**2, axis=1)
    twin = np.random.default_rng(1)
    after = advance(swarm, fitness, 0, enc, np.random.default_rng(1), coef)
    r1, r2 = twin.random((8, 5)), twin.random((8, 5))
    best = swarm.x[np.argmax(fitness)]
    v = coef.inertia * swarm.v + coef.social * r2 * (best - swarm.x)  # pbest = x after gen 0
    v += coef.cognitive * r1 * 0.0
    limit = 0.2 * 2 * BOX
    assert np.allclose(after.v, np.clip(v, -limit, limit))
    assert np.allclose(after.x, np.clip(swarm.x + after.v, -BOX, BOX))
    assert after.gbest_f == pytest.approx(fitness.max()) and after.improved_at == 0
    assert np.all(np.abs(after.v) <= limit + 1e-12)


# -- optimisation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "objective", "budget"), [("sphere", sphere, 440), ("rastrigin", rastrigin, 880)]
)
def test_pso_beats_random_search_at_equal_budget(name: str, objective, budget: int) -> None:
    """In 22 dimensions, on each of 3 seeds, the swarm's best is lower than random search's."""
    for seed in range(3):
        results = {}
        for kind in ("pso", "random"):
            sampler = (
                PSOSampler(space(22), n_particles=22, seed=seed)
                if kind == "pso"
                else optuna.samplers.RandomSampler(seed=seed)
            )
            study = optuna.create_study(sampler=sampler)
            study.optimize(objective(22), n_trials=budget)
            results[kind] = study.best_value
        assert results["pso"] < results["random"], (name, seed, results)


# -- the swarm lives in the storage ---------------------------------------------------------


def test_results_do_not_depend_on_completion_order() -> None:
    """Two studies told the same generation's results in opposite orders move to the same
    positions."""
    studies = []
    for order in (1, -1):
        study = optuna.create_study(sampler=PSOSampler(space(3), n_particles=5, seed=3))
        for _generation in range(3):
            trials = [study.ask() for _ in range(5)]
            values = [float(np.sum(point(t, 3) ** 2)) for t in trials]
            for t, v in list(zip(trials, values, strict=True))[::order]:
                study.tell(t, v)
        studies.append(positions(study))
    assert studies[0] == studies[1]
    assert len(studies[0]) == 15


def test_a_new_sampler_on_the_same_storage_continues_the_swarm(tmp_path) -> None:
    """Stop after 7 trials (mid-generation), reopen the journal with new objects: the trials
    that follow are those of an uninterrupted run."""
    reference = optuna.create_study(sampler=PSOSampler(space(3), n_particles=4, seed=1))
    reference.optimize(sphere(3), n_trials=16)

    path = str(tmp_path / "study.journal")

    def storage() -> optuna.storages.BaseStorage:
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))

    first = optuna.create_study(
        storage=storage(), study_name="s", sampler=PSOSampler(space(3), n_particles=4, seed=1)
    )
    first.optimize(sphere(3), n_trials=7)
    again = optuna.load_study(
        storage=storage(), study_name="s", sampler=PSOSampler(space(3), n_particles=4, seed=1)
    )
    again.optimize(sphere(3), n_trials=9)
    assert positions(again) == positions(reference)
    assert [t.value for t in again.trials] == [t.value for t in reference.trials]


def test_failed_trials_are_retried_and_diverged_ones_are_not() -> None:
    """An exception fails the trial and the particle is handed out again (same position); a
    trial marked with NO_RETRY counts as evaluated; after max_retries failures a particle
    counts as evaluated too."""
    sampler = PSOSampler(space(2), n_particles=3, seed=0, max_retries=1)
    study = optuna.create_study(sampler=sampler)
    calls = {"n": 0}

    def objective(trial: optuna.Trial) -> float:
        x = point(trial, 2)
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("worker crashed")
        if calls["n"] == 3:
            trial.set_user_attr(NO_RETRY, "diverged")
            raise RuntimeError("diverged")
        return float(np.sum(x**2))

    study.optimize(objective, n_trials=4, catch=(RuntimeError,))
    tags = [(t.system_attrs[GENERATION], t.system_attrs[PARTICLE]) for t in study.trials]
    crashed = tags[0]
    assert sorted(set(tags)) == [(0, 0), (0, 1), (0, 2)] and tags.count(crashed) == 2
    retry = tags.index(crashed, 1)
    assert study.trials[retry].params == study.trials[0].params  # the same position
    # every particle has exactly one trial that is not a retriable failure
    for tag in set(tags):
        kept = [
            t
            for t, k in zip(study.trials, tags, strict=True)
            if k == tag and (t.state != TrialState.FAIL or t.user_attrs.get(NO_RETRY))
        ]
        assert len(kept) == 1, tag
    assert [t.state for t in study.trials].count(TrialState.FAIL) == 2
    assert sampler.generation(study) == 1

    # max_retries = 1: the second failure of a particle ends its retries
    failing = optuna.create_study(
        sampler=PSOSampler(space(2), n_particles=2, seed=0, max_retries=1)
    )

    def always(trial: optuna.Trial) -> float:
        point(trial, 2)
        raise RuntimeError("boom")

    failing.optimize(always, n_trials=4, catch=(RuntimeError,))
    tags = [(t.system_attrs[GENERATION], t.system_attrs[PARTICLE]) for t in failing.trials]
    assert sorted(tags) == [(0, 0), (0, 0), (0, 1), (0, 1)]  # each tried 1 + max_retries times
    assert PSOSampler(space(2), n_particles=2, seed=0, max_retries=1).generation(failing) == 1


def test_pruned_particles_count_as_evaluated_but_never_become_the_best() -> None:
    sampler = PSOSampler(space(2), n_particles=2, seed=0)
    study = optuna.create_study(sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        x = point(trial, 2)
        if trial.number == 0:
            raise optuna.TrialPruned()
        return float(np.sum(x**2))

    study.optimize(objective, n_trials=2)
    assert sampler.generation(study) == 1
    assert sampler.best(study) == (study.trials[1].value, 0)


def test_duplicate_claims_count_the_lowest_trial_number() -> None:
    """Two trials claiming one particle (a race): the generation waits for the lower-numbered
    one and uses its value, whichever finishes first."""
    sampler = PSOSampler(space(1), n_particles=1, seed=0, poll_interval=0.01)
    study = optuna.create_study(sampler=sampler)
    first = study.ask()
    point(first, 1)  # claims particle 0
    second = study.ask()

    for key in (GENERATION, PARTICLE, POSITION):
        compat.set_trial_system_attr(
            study, compat.trial_id(second), key, study.trials[0].system_attrs[key]
        )
    study.tell(second, 100.0)  # the duplicate finishes first
    assert sampler.generation(study) == 0  # still waiting for trial 0
    study.tell(first, 1.0)
    assert sampler.generation(study) == 1
    assert sampler.best(study) == (1.0, 0)


def test_untagged_trials_are_ignored() -> None:
    sampler = PSOSampler(space(2), n_particles=2, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial({"x00": 0.0, "x01": 0.0})
    study.optimize(sphere(2), n_trials=3)
    assert GENERATION not in study.trials[0].system_attrs
    assert study.trials[0].value == 0.0
    assert sampler.generation(study) == 1
    assert sampler.best(study)[0] > 0.0  # the hand-made optimum is not the swarm's


def test_stopping_rules_end_a_plain_optimize_cleanly() -> None:
    """Before: a plain study.optimize raised SwarmFinished and left a FAIL trial; now the
    study stops after the last generation, and a later optimize evaluates the best once
    (an extra trial, not part of the swarm) and stops."""
    sampler = PSOSampler(space(2), n_particles=2, seed=0, max_generations=2)
    study = optuna.create_study(sampler=sampler)
    study.optimize(sphere(2), n_trials=50)
    assert len(study.trials) == 4 and sampler.finished(study)
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    study.optimize(sphere(2), n_trials=50)
    extra = study.trials[4]
    assert len(study.trials) == 5 and extra.state == TrialState.COMPLETE
    assert extra.system_attrs[EXTRA] is True and GENERATION not in extra.system_attrs
    assert extra.value == pytest.approx(sampler.best(study)[0])  # the swarm's best, again

    patient = PSOSampler(space(2), n_particles=2, seed=0, patience=2)
    flat = optuna.create_study(sampler=patient)
    flat.optimize(lambda t: float(point(t, 2)[0] * 0 + 1.0), n_trials=20)
    # generation 0 set the best; generations 1 and 2 did not improve it
    assert patient.generation(flat) == 3 and patient.finished(flat)
    assert {t.state for t in flat.trials} == {TrialState.COMPLETE} and len(flat.trials) <= 7


def test_swarm_finished_is_raised_on_request() -> None:
    sampler = PSOSampler(space(2), n_particles=2, seed=0, max_generations=2)
    sampler.raise_when_finished = True
    study = optuna.create_study(sampler=sampler)
    study.optimize(sphere(2), n_trials=4)
    with pytest.raises(SwarmFinished):
        study.optimize(sphere(2), n_trials=1)
    assert len([t for t in study.trials if GENERATION in t.system_attrs]) == 4


def test_sparse_start_and_initial_params() -> None:
    names = [f"x{i:02d}" for i in range(6)]
    sparse = SparseInit(optional=tuple(names[:4]), baseline={n: 0.0 for n in names[:4]}, k=1)
    sampler = PSOSampler(
        space(6),
        n_particles=5,
        seed=0,
        sparse_init=sparse,
        initial_params=[{n: 1.0 for n in names}],
    )
    study = optuna.create_study(sampler=sampler)
    study.optimize(sphere(6), n_trials=5)
    first = study.trials[0].params
    assert all(v == pytest.approx(1.0) for v in first.values())
    for t in study.trials[1:]:
        off = [n for n in names[:4] if t.params[n] == 0.0]
        assert len(off) == 3  # k = 1 of the 4 optional parameters kept random
        assert all(t.params[n] != 0.0 for n in names[4:])


def test_int_and_categorical_parameters_in_a_study() -> None:
    dists = {
        "n": IntDistribution(1, 9),
        "kind": CategoricalDistribution(["a", "b", "c"]),
        "lr": FloatDistribution(1e-4, 1.0, log=True),
    }
    study = optuna.create_study(sampler=PSOSampler(dists, n_particles=6, seed=0))

    def objective(trial: optuna.Trial) -> float:
        n = trial.suggest_int("n", 1, 9)
        kind = trial.suggest_categorical("kind", ["a", "b", "c"])
        lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        return (n - 7) ** 2 + (kind != "b") * 5 + abs(math.log10(lr) + 2)

    study.optimize(objective, n_trials=120)
    assert study.best_params["n"] == 7 and study.best_params["kind"] == "b"
    assert {t.params["kind"] for t in study.trials} == {"a", "b", "c"}
    assert all(1 <= t.params["n"] <= 9 for t in study.trials)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="search_space"):
        PSOSampler({})
    with pytest.raises(ValueError, match="n_particles"):
        PSOSampler(space(2), n_particles=0)
    with pytest.raises(ValueError, match="not in the space"):
        PSOSampler(space(2), sparse_init=SparseInit(("y",), {"y": 0.0}))
    with pytest.raises(ValueError, match="single-objective"):
        study = optuna.create_study(
            directions=["minimize", "minimize"], sampler=PSOSampler(space(1))
        )
        study.optimize(lambda t: (point(t, 1)[0], 0.0), n_trials=1)


def test_states_of_finished_trials_are_the_expected_ones() -> None:
    study = optuna.create_study(sampler=PSOSampler(space(2), n_particles=3, seed=0))
    study.optimize(sphere(2), n_trials=6)
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}


def test_more_open_trials_than_particles_in_one_thread_never_block() -> None:
    """Five study.ask() before any tell with 4 particles: the fifth blocked forever in the
    free-particle poll; now it evaluates a random point that does not feed the swarm."""
    sampler = PSOSampler(space(2), n_particles=4, seed=0, poll_interval=0.01)
    study = optuna.create_study(sampler=sampler)
    trials = [study.ask() for _ in range(5)]
    params = [point(t, 2) for t in trials]  # the fifth suggest used to hang here
    assert [GENERATION in t.system_attrs for t in study.trials] == [True] * 4 + [False]
    assert study.trials[4].system_attrs[EXTRA] is True
    for trial, x in zip(trials, params, strict=True):
        study.tell(trial, float(np.sum(np.square(x))))
    study.optimize(sphere(2), n_trials=4)
    assert sampler.generation(study) == 2  # the extra trial took no particle's place


def test_multi_objective_studies_are_refused_on_every_path() -> None:
    sampler = PSOSampler(space(2), n_particles=2, seed=0)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    trial = study.ask()
    frozen = study.trials[0]
    with pytest.raises(ValueError, match="single-objective"):
        sampler.infer_relative_search_space(study, frozen)
    with pytest.raises(ValueError, match="single-objective"):
        sampler.sample_independent(study, frozen, "x00", FloatDistribution(-5, 5))
    with pytest.raises(ValueError, match="single-objective"):
        trial.suggest_float("x00", -5, 5)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_partial_fixed_sampler_gets_only_the_parameters_it_asked_for() -> None:
    """Before: `ValueError: The parameter ... was sampled by sample_relative method but it is
    not contained in the relative search space.`"""
    inner = PSOSampler(space(2), n_particles=2, seed=0)
    sampler = optuna.samplers.PartialFixedSampler({"x00": 0.5}, inner)
    study = optuna.create_study(sampler=sampler)
    study.optimize(sphere(2), n_trials=4)
    assert [t.params["x00"] for t in study.trials] == [0.5] * 4
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_the_swarm_learns_the_points_actually_evaluated(caplog: pytest.LogCaptureFixture) -> None:
    """Before: a trial evaluated with x00 fixed at 0.5 credited its value to its particle's
    position (x00 = 4.35, say), a point never evaluated. Now the swarm takes the evaluated
    point: with x00 fixed in every trial, its best has x00 = 0.5."""
    inner = PSOSampler(space(2), n_particles=3, seed=0)
    study = optuna.create_study(sampler=optuna.samplers.PartialFixedSampler({"x00": 0.5}, inner))
    study.optimize(sphere(2), n_trials=9)
    swarm = inner._current(study).swarm
    assert swarm.gbest_x is not None and swarm.gbest_x[0] == pytest.approx(0.5)
    assert np.allclose(swarm.pbest_x[:, 0], 0.5)
    assert "evaluated away from its particle's position" in caplog.text

    plain = PSOSampler(space(2), n_particles=3, seed=0)
    honest = optuna.create_study(sampler=plain)
    honest.optimize(sphere(2), n_trials=9)  # nothing fixed: positions are the particles'
    assert not np.allclose(plain._current(honest).swarm.pbest_x[:, 0], 0.5)


def test_a_point_outside_the_space_teaches_the_swarm_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A trial asked with a range that excludes its particle's value is evaluated elsewhere,
    outside the declared space: clipping it to the border would credit its value to a point
    never evaluated, so its result is left out (fitness −∞), with a warning."""
    sampler = PSOSampler({"x": FloatDistribution(-5, 5)}, n_particles=3, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", 10, 20), n_trials=3)
    assert all(10 <= t.params["x"] <= 20 for t in study.trials)
    view = sampler._current(study)
    assert view is not None and view.generation == 1
    assert view.swarm.gbest_x is None and np.all(np.isneginf(view.swarm.pbest_f))
    assert "lies outside the swarm's space, so its result is not used" in caplog.text

    # Optuna itself refuses a categorical asked with other choices; a value the choices do
    # not hold (from storage written by hand, say) is outside the space all the same
    enc = Encoding.of({"c": CategoricalDistribution(["a", "b"]), "x": FloatDistribution(0, 1)})
    assert _representable(enc, {"c": "z", "x": 0.5}) is None
    assert _representable(enc, {"c": "b", "x": 1.5}) is None
    assert _representable(enc, {"c": "b", "x": 0.5}) == pytest.approx([1.5, 0.5])


def test_define_by_run_infers_the_space_from_the_first_complete_trial() -> None:
    """Without a declared space the first trial is sampled at random and stays outside the
    swarm; its parameters become the swarm's dimensions, stored in the study, and from then on
    the swarm moves exactly as one given that space up front."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, sampler=PSOSampler(n_particles=4, seed=5))
    study.optimize(sphere(2), n_trials=13)
    assert GENERATION not in study.trials[0].system_attrs
    assert compat.study_system_attrs(study)[SPACE].keys() == {"x00", "x01"}
    inferred = positions(study)
    assert sorted(inferred) == [(g, i) for g in range(3) for i in range(4)]

    declared = optuna.create_study(sampler=PSOSampler(space(2), n_particles=4, seed=5))
    declared.optimize(sphere(2), n_trials=12)
    assert positions(declared) == inferred

    # another worker (a new sampler) reads the stored space, whatever it sees first
    again = optuna.load_study(
        study_name=study.study_name, storage=storage, sampler=PSOSampler(n_particles=4, seed=5)
    )
    again.optimize(sphere(2), n_trials=4)
    assert sorted(positions(again))[-4:] == [(3, i) for i in range(4)]


def test_define_by_run_refuses_a_sparse_start_and_checks_initial_points() -> None:
    with pytest.raises(ValueError, match="sparse_init needs a declared search_space"):
        PSOSampler(sparse_init=SparseInit(optional=("x",), baseline={"x": 0.0}))
    sampler = PSOSampler(n_particles=2, seed=0, initial_params=[{"x00": 9.0, "x01": 0.0}])
    study = optuna.create_study(sampler=sampler)
    with pytest.raises(ValueError, match=r"initial_params\[0\] = .* lies outside the space"):
        study.optimize(sphere(2), n_trials=2)


def test_a_waiting_trial_gives_up_after_wait_timeout_with_the_holders_named() -> None:
    """Another thread holds every particle and never tells: a trial that needs one waits
    ``wait_timeout`` seconds, then fails with a message naming the trials it waited for."""
    import threading
    import time

    sampler = PSOSampler(space(1), n_particles=2, seed=0, wait_timeout=0.3, poll_interval=0.05)
    study = optuna.create_study(sampler=sampler)
    held = [study.ask() for _ in range(2)]
    for t in held:
        point(t, 1)  # claims the particles in this thread
    errors: list[BaseException] = []

    def other_worker() -> None:
        try:
            point(study.ask(), 1)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            errors.append(err)

    start = time.monotonic()
    worker = threading.Thread(target=other_worker)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive() and time.monotonic() - start < 5
    assert len(errors) == 1 and isinstance(errors[0], SwarmWaitTimeout)
    message = str(errors[0])
    assert "waited 0.3 s for a free particle of generation 0" in message
    assert "0 (" in message and "1 (" in message and "longer wait_timeout" in message
    assert positions(study).keys() == {(0, 0), (0, 1)}  # the swarm is unchanged
