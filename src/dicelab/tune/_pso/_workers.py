"""Which process runs a trial, and failing the trials of processes that are gone.

Storages with a heartbeat (RDBStorage) fail a dead worker's trials themselves. The journal
file has none: a worker killed with SIGKILL leaves its trial RUNNING forever. Every trial
therefore records its worker's host and process id, and a trial RUNNING on this host whose
process no longer exists can be failed (and, for the PSO sampler, retried).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import _compat as compat
from ._process import alive

_log = logging.getLogger(__name__)

#: System attribute: [host, process id, thread id] of the worker that runs a trial, written
#: as one attribute so that a worker killed while tagging leaves all of it or none (with
#: the host written but not the process id, its trial could never be recognised as dead).
WORKER = "worker"


def record_worker(study: optuna.Study, trial_id: int) -> None:
    """Tag a trial with this process's host and id, and the thread that runs it."""
    me = [socket.gethostname(), os.getpid(), threading.get_ident()]
    compat.set_trial_system_attr(study, trial_id, WORKER, me)


def worker_of(trial: FrozenTrial) -> tuple[str | None, int | None, int | None]:
    """(host, process id, thread id) of the worker a trial records; ``None`` for each when it
    records none."""
    tag = trial.system_attrs.get(WORKER)
    if not isinstance(tag, list) or len(tag) != 3:
        return None, None, None
    return tag[0], tag[1], tag[2]


def this_thread_holds_all(trials: Iterable[FrozenTrial]) -> bool:
    """Whether every one of ``trials`` (at least one) was claimed by this very thread: then
    none can finish while this thread waits (``study.ask()`` several times before any
    ``tell``), and waiting for them would never end."""
    me = (socket.gethostname(), os.getpid(), threading.get_ident())
    return {worker_of(t) for t in trials} == {me}


def fail_dead_workers(study: optuna.Study, trials: Iterable[FrozenTrial] | None = None) -> int:
    """Fail the RUNNING trials (of ``trials``, default all) whose worker on this host is gone;
    the number failed. Trials of other hosts are left alone (their processes cannot be seen)."""
    host, me = socket.gethostname(), os.getpid()
    if trials is None:
        trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    failed = 0
    for t in trials:
        owner, pid, _thread = worker_of(t)
        if t.state != TrialState.RUNNING or owner != host:
            continue
        if isinstance(pid, int) and pid != me and not alive(pid) and compat.fail_trial(study, t):
            _log.warning("trial %d: its worker (pid %d) is gone; marked failed", t.number, pid)
            failed += 1
    return failed
