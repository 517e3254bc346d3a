"""The only module that touches Optuna's private API (written against optuna 5.0 and 5.1).

A sampler has to tag trials and studies with its own bookkeeping (generation, particle,
position, an inferred search space) the way Optuna's built-in samplers do, and a crashed
worker's trials have to be failed on storages without a heartbeat; Optuna 5 exposes neither
through public methods.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState


def set_trial_system_attr(study: optuna.Study, trial_id: int, key: str, value: Any) -> None:
    """Store a sampler tag on a trial (JSON value)."""
    study._storage.set_trial_system_attr(trial_id, key, value)


def study_system_attrs(study: optuna.Study) -> dict[str, Any]:
    """The sampler tags stored on a study (read fresh from the storage, not a cached copy)."""
    return study._storage.get_study_system_attrs(study._study_id)


def set_study_system_attr(study: optuna.Study, key: str, value: Any) -> None:
    """Store a sampler tag on a study (JSON value)."""
    study._storage.set_study_system_attr(study._study_id, key, value)


def contains(dist: BaseDistribution, value: Any) -> bool:
    """Whether ``dist`` can hold ``value`` (in range, on its step, one of its choices); a value
    of another type cannot. Optuna checks this only through a private method."""
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage id of a live or frozen trial."""
    return trial._trial_id


def fail_trial(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Mark a RUNNING trial as FAIL; False if another process changed its state first."""
    try:
        return study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):  # finished meanwhile
        return False


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail trials whose heartbeat stopped (RDB storages with a heartbeat; else nothing).

    Optuna does this only when a trial starts; a worker waiting for a generation calls it so
    that a dead worker's particle is retried.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
