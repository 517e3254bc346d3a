"""Several processes on one swarm: the journal file and PostgreSQL, with a worker killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dicelab.tune._pso._workers import worker_of
from dicelab.tune._pso.sampler import GENERATION, PARTICLE, POSITION
from dicelab.tune.storage import open_storage

from . import pso_worker

WORKER = Path(pso_worker.__file__)
GENERATIONS = 4


def reference() -> optuna.Study:
    """The same swarm run by one process, trial after trial."""
    swarm = pso_worker.sampler(GENERATIONS)
    study = optuna.create_study(sampler=swarm)
    study.optimize(pso_worker.objective(0.0), n_trials=GENERATIONS * pso_worker.PARTICLES)
    return study


def counted(study: optuna.Study) -> dict[tuple[int, int], tuple[list[float], float]]:
    """(generation, particle) → (position, value) of the trial that counts for it: the
    lowest-numbered tagged trial that is not a retriable failure."""
    result: dict[tuple[int, int], tuple[list[float], float]] = {}
    for t in sorted(study.trials, key=lambda t: t.number):
        if GENERATION not in t.system_attrs or t.state != TrialState.COMPLETE:
            continue
        key = (t.system_attrs[GENERATION], t.system_attrs[PARTICLE])
        result.setdefault(key, (t.system_attrs[POSITION], t.value))
    return result


def launch(spec: str, workers: int, pause: float) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": str(WORKER.parents[2] / "src")}
    return [
        subprocess.Popen(
            [sys.executable, str(WORKER), spec, "s", str(GENERATIONS), str(pause)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]


def finish(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        _, err = p.communicate(timeout=240)
        assert p.returncode in (0, -signal.SIGKILL), err


def check(spec: str) -> optuna.Study:
    study = optuna.load_study(study_name="s", storage=open_storage(spec))
    expected = counted(reference())
    got = counted(study)
    assert got == expected  # the same swarm, generation by generation, as one process
    assert len(got) == GENERATIONS * pso_worker.PARTICLES
    return study


def test_three_processes_on_a_journal_file_build_the_single_process_swarm(tmp_path) -> None:
    spec = str(tmp_path / "study.journal")
    finish(launch(spec, 3, 0.05))
    study = check(spec)
    tagged = [t for t in study.trials if GENERATION in t.system_attrs]
    assert len(tagged) <= GENERATIONS * pso_worker.PARTICLES + 3  # at most a few races
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_failed_and_its_particle_retried(tmp_path) -> None:
    """SIGKILL one of three workers while it trains; the others notice its process is gone,
    fail its trial, retry the particle, and the swarm ends as the single-process one."""
    spec = str(tmp_path / "study.journal")
    processes = launch(spec, 3, 0.4)
    storage = open_storage(spec)
    victim = processes[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the victim is running a trial
        try:
            study = optuna.load_study(study_name="s", storage=storage)
        except KeyError:
            time.sleep(0.05)
            continue
        mine = [  # a trial that has claimed its particle (not one still claiming)
            t
            for t in study.get_trials(states=(TrialState.RUNNING,))
            if worker_of(t)[1] == victim.pid and GENERATION in t.system_attrs
        ]
        if mine:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the victim never started a trial")
    victim.send_signal(signal.SIGKILL)
    victim.wait()  # reaped: its pid is gone
    finish(processes)
    study = check(spec)
    killed = [t for t in study.trials if t.number == mine[0].number]
    assert killed[0].state == TrialState.FAIL


def test_four_processes_share_one_study_on_postgresql(postgres_db: str) -> None:
    """4 workers on one PostgreSQL study: the swarm is the single-process one, no trial is
    left running, and at most a few particles are evaluated twice (claim races)."""
    finish(launch(postgres_db, 4, 0.05))
    study = check(postgres_db)
    tagged = [t for t in study.trials if GENERATION in t.system_attrs]
    assert len(tagged) <= GENERATIONS * pso_worker.PARTICLES + 4
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]


def test_a_worker_tags_its_trial_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed between two attribute writes must not leave its trial with a host but
    no process id (never recognisable as dead, so RUNNING forever): the tag is one write."""
    import os
    import socket
    import threading

    from dicelab.tune._pso import _compat as compat
    from dicelab.tune._pso._workers import record_worker

    study = optuna.create_study()
    trial = study.ask()
    writes: list[str] = []
    real = compat.set_trial_system_attr

    def counting(study: optuna.Study, trial_id: int, key: str, value: object) -> None:
        writes.append(key)
        real(study, trial_id, key, value)

    monkeypatch.setattr(compat, "set_trial_system_attr", counting)
    record_worker(study, compat.trial_id(trial))
    assert len(writes) == 1
    tagged = study.trials[trial.number]
    assert worker_of(tagged) == (socket.gethostname(), os.getpid(), threading.get_ident())
