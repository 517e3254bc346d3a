"""A PSO worker process for the multi-process tests: optimise a 3-D sphere on a shared study.

python pso_worker.py STORAGE STUDY GENERATIONS SLEEP
"""

from __future__ import annotations

import sys
import time

import numpy as np
import optuna

from dicelab.tune import PSOSampler, SwarmFinished
from dicelab.tune.storage import open_storage

DIMS, PARTICLES, SEED = 3, 4, 7


def space() -> dict[str, optuna.distributions.FloatDistribution]:
    return {f"x{i}": optuna.distributions.FloatDistribution(-5, 5) for i in range(DIMS)}


def objective(pause: float):
    def f(trial: optuna.Trial) -> float:
        x = np.array([trial.suggest_float(f"x{i}", -5, 5) for i in range(DIMS)])
        time.sleep(pause)
        return float(np.sum((x - 1) ** 2))

    return f


def sampler(generations: int) -> PSOSampler:
    return PSOSampler(
        space(), n_particles=PARTICLES, seed=SEED, max_generations=generations, poll_interval=0.05
    )


def main() -> None:
    spec, name, generations, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    swarm = sampler(generations)
    study = optuna.create_study(
        storage=open_storage(spec), study_name=name, sampler=swarm, load_if_exists=True
    )

    def stop(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if swarm.finished(study):
            study.stop()

    if not swarm.finished(study):
        study.optimize(objective(pause), callbacks=[stop], catch=(SwarmFinished,))


if __name__ == "__main__":
    main()
