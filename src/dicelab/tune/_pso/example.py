"""The OptunaHub example: a particle swarm on a mixed space, stopped after 8 generations.

Run it with ``python example.py`` once the package is on OptunaHub (or, from a checkout of
dicelab, with ``python -m dicelab.tune._pso.example``, which loads this very folder).
"""

from __future__ import annotations

import optuna


def objective(trial: optuna.Trial) -> float:
    """Lowest (0) at x = 1, two layers and relu."""
    x = trial.suggest_float("x", -5, 5)
    layers = trial.suggest_int("layers", 1, 4)
    activation = trial.suggest_categorical("activation", ["relu", "gelu"])
    return (x - 1) ** 2 / 10 + abs(layers - 2) + (1.0 if activation == "gelu" else 0.0)


def main(module: object) -> optuna.Study:
    """Optimise ``objective`` with the package's PSOSampler (define-by-run: the space is
    taken from the first trial)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = module.PSOSampler(n_particles=8, seed=0, max_generations=8)  # type: ignore[attr-defined]
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=1000)  # ends by itself after 8 generations
    print(f"{len(study.trials)} trials, best {study.best_value:.4f} at {study.best_params}")
    return study


if __name__ == "__main__":
    if __package__:  # python -m dicelab.tune._pso.example
        import importlib

        main(importlib.import_module(__package__))
    else:  # the hub's layout: python example.py
        import optunahub

        main(optunahub.load_module(package="samplers/pso"))
