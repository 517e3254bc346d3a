"""PSOSampler's asynchronous updates (each particle reads the global best that includes the
particles before it, as Altarabichi et al.'s ``Swarm.optimize``) and its position cache."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from dicelab.tune import PSOSampler
from dicelab.tune._pso._swarm import Coefficients, Encoding, initial_swarm
from dicelab.tune._pso.sampler import GENERATION, PARTICLE, POSITION

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {"a": FloatDistribution(-4, 4), "b": FloatDistribution(-4, 4)}


def bowl(params: dict[str, float]) -> float:
    return (params["a"] - 1) ** 2 + (params["b"] + 2) ** 2


def positions(study: optuna.Study) -> dict[tuple[int, int], list[float]]:
    """(generation, particle) → the position its trial was handed."""
    return {
        (t.system_attrs[GENERATION], t.system_attrs[PARTICLE]): t.system_attrs[POSITION]
        for t in study.trials
        if GENERATION in t.system_attrs
    }


def reference_async(n: int, generations: int, seed: int) -> dict[tuple[int, int], np.ndarray]:
    """The authors' asynchronous loop written out directly (minimising ``bowl``): evaluate the
    first generation, then move and evaluate particle after particle, each reading the best
    of the personal bests as they stand, with r1, r2 from (seed, 1, generation, particle)."""
    enc = Encoding.of(SPACE)
    coef = Coefficients()
    swarm = initial_swarm(enc, n, np.random.default_rng([seed, 0]), coef)
    x, v = swarm.x.copy(), swarm.v.copy()
    fitness = np.array([-bowl(enc.decode(p)) for p in x])
    pbest_x, pbest_f = x.copy(), fitness.copy()
    handed = {(0, i): x[i].copy() for i in range(n)}
    limit = coef.velocity_clamp * (enc.high - enc.low)
    for g in range(1, generations):
        for i in range(n):
            gbest = pbest_x[int(np.argmax(pbest_f))]
            rng = np.random.default_rng([seed, 1, g, i])
            r1, r2 = rng.random(2), rng.random(2)
            v[i] = np.clip(
                coef.inertia * v[i]
                + coef.cognitive * r1 * (pbest_x[i] - x[i])
                + coef.social * r2 * (gbest - x[i]),
                -limit,
                limit,
            )
            x[i] = np.clip(x[i] + v[i], enc.low, enc.high)
            handed[(g, i)] = x[i].copy()
            f = -bowl(enc.decode(x[i]))
            if f > pbest_f[i]:
                pbest_x[i], pbest_f[i] = x[i].copy(), f
    return handed


def test_asynchronous_updates_follow_the_authors_loop() -> None:
    """Every position handed out equals the one the authors' particle-by-particle loop reaches;
    the synchronous swarm goes elsewhere from the second generation on."""
    n, generations = 4, 5
    studies = {}
    for update in ("asynchronous", "synchronous"):
        sampler = PSOSampler(
            SPACE, n_particles=n, seed=7, update=update, max_generations=generations
        )
        study = optuna.create_study(sampler=sampler)
        study.optimize(lambda t: bowl({k: t.suggest_float(k, -4, 4) for k in SPACE}), 100)
        assert len(study.trials) == n * generations  # ends at the rule, not one particle early
        studies[update] = positions(study)
    expected = reference_async(n, generations, seed=7)
    assert studies["asynchronous"].keys() == expected.keys()
    for key, position in expected.items():
        np.testing.assert_allclose(studies["asynchronous"][key], position, rtol=0, atol=1e-12)
    moved = [key for key in expected if key[0] >= 1]
    # (velocities clamped in both dimensions land both on the same point, often at first)
    assert any(
        not np.allclose(studies["asynchronous"][k], studies["synchronous"][k]) for k in moved
    )


def test_asynchronous_swarm_is_the_same_with_threads_sharing_it() -> None:
    """Two threads on one asynchronous swarm: after the first generation one waits while the
    other evaluates; the positions are those of a single thread."""
    runs = []
    for jobs in (1, 2):
        sampler = PSOSampler(
            SPACE,
            n_particles=3,
            seed=1,
            update="asynchronous",
            max_generations=4,
            poll_interval=0.01,
        )
        study = optuna.create_study(sampler=sampler)
        study.optimize(
            lambda t: bowl({k: t.suggest_float(k, -4, 4) for k in SPACE}), 12, n_jobs=jobs
        )
        runs.append(positions(study))
    assert runs[0] == runs[1]
    assert len(runs[0]) == 12


def test_asynchronous_trials_of_one_generation_are_evaluated_one_at_a_time() -> None:
    """ask() after the first generation hands out the next particle only once the one before
    it has a result: a second open trial in the same thread gets a point outside the swarm."""
    sampler = PSOSampler(SPACE, n_particles=2, seed=0, update="asynchronous")
    study = optuna.create_study(sampler=sampler)
    for _ in range(2):  # generation 0: both particles at once
        t = study.ask()
        study.tell(t, bowl({k: t.suggest_float(k, -4, 4) for k in SPACE}))
    first = study.ask()
    first.suggest_float("a", -4, 4)
    second = study.ask()
    second.suggest_float("a", -4, 4)
    assert study._storage.get_trial_system_attrs(first._trial_id)[PARTICLE] == 0
    assert PARTICLE not in study._storage.get_trial_system_attrs(second._trial_id)


LATTICE = {"m": IntDistribution(0, 3), "n": IntDistribution(0, 3)}


def lattice_run(cache: bool, update: str) -> tuple[optuna.Study, PSOSampler, Counter]:
    """A swarm on a 4 × 4 grid of integers, where positions repeat; the objective counts how
    often each point is evaluated."""
    calls: Counter = Counter()

    def objective(trial: optuna.Trial) -> float:
        point = (trial.suggest_int("m", 0, 3), trial.suggest_int("n", 0, 3))
        calls[point] += 1
        return float((point[0] - 2) ** 2 + (point[1] - 1) ** 2)

    sampler = PSOSampler(
        LATTICE, n_particles=5, seed=4, max_generations=8, cache=cache, update=update
    )
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=200)
    return study, sampler, calls


@pytest.mark.parametrize("update", ["synchronous", "asynchronous"])
def test_the_cache_saves_every_repeat_and_changes_nothing_else(update: str) -> None:
    """With a deterministic objective the cached swarm takes the same path as the uncached
    one (every handed position is one the uncached swarm also handed, at the same
    generation and particle) and reaches the same best. No point is evaluated again once a
    result for it is known: from earlier generations, and in the asynchronous swarm from
    the earlier particles of the same generation too (the first generation's particles run
    side by side, so two of them can share a point)."""
    plain, plain_sampler, plain_calls = lattice_run(False, update)
    cached, cached_sampler, cached_calls = lattice_run(True, update)
    assert sum(plain_calls.values()) == 40  # 5 particles x 8 generations
    assert sum(cached_calls.values()) < 40
    assert plain_sampler.best(plain) == cached_sampler.best(cached)
    assert positions(cached).items() <= positions(plain).items()
    order = sorted(
        (t.system_attrs[GENERATION], t.system_attrs[PARTICLE], (t.params["m"], t.params["n"]))
        for t in cached.trials
        if GENERATION in t.system_attrs  # not the extra trial of the best after the end
    )
    for g, i, point in order:
        if g == 0:
            continue
        known = [p for g2, i2, p in order if g2 < g or (update == "asynchronous" and
                                                        g2 == g and i2 < i)]  # fmt: skip
        assert point not in known, (g, i, point)


def test_a_cache_key_function_merges_points_that_make_the_same_run() -> None:
    """``cache`` as a function: positions whose key is equal share one evaluation (here the
    key ignores ``b`` and rounds ``a``); after the first generation no trial evaluates a key
    that an earlier trial evaluated."""

    def objective(trial: optuna.Trial) -> float:
        a = trial.suggest_float("a", -4, 4)
        trial.suggest_float("b", -4, 4)
        return float((round(a) - 1) ** 2)

    sampler = PSOSampler(
        SPACE,
        n_particles=4,
        seed=2,
        max_generations=10,
        update="asynchronous",
        cache=lambda params: round(params["a"]),
    )
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=100)
    swarm = [t for t in study.trials if GENERATION in t.system_attrs]
    assert len(swarm) < 40
    for k, trial in enumerate(swarm):
        if trial.system_attrs[GENERATION] > 0:
            earlier = {round(t.params["a"]) for t in swarm[:k]}
            assert round(trial.params["a"]) not in earlier
    assert sampler.best(study)[0] == 0.0


def test_a_swarm_served_from_the_cache_stops_at_its_rule() -> None:
    """A key that is the same for every point: after the first generation every position is
    a cache hit; the swarm still ends at max_generations, and later trials each get the
    swarm's best, outside it."""
    sampler = PSOSampler(SPACE, n_particles=2, seed=0, max_generations=50, cache=lambda p: 0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: bowl({k: t.suggest_float(k, -4, 4) for k in SPACE}), n_trials=10)
    assert [GENERATION in t.system_attrs for t in study.trials] == [True, True, False]
    assert sampler.finished(study) and sampler.generation(study) == 50


def test_bad_update_and_cache_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="update must be"):
        PSOSampler(SPACE, update="async")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cache needs a stopping rule"):
        PSOSampler(SPACE, cache=True)
    assert math.isnan(PSOSampler(SPACE, cache=True, patience=2).best(optuna.create_study())[0])
