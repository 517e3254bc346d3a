"""Fault injection for searches: torn and damaged journals, a full disk, kill -9 at random
moments, orphaned workers, trial budgets under concurrency, searches where nothing completes,
secrets in messages, and a PostgreSQL server that goes away and comes back.

Every test here reproduces a failure that lost or corrupted work, or printed a traceback,
before the fix it guards."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.trial import TrialState

import dicelab.tune.storage as storage_module
from dicelab.exceptions import ConfigError, StorageError
from dicelab.tune import NO_RETRY
from dicelab.tune._journal import SafeJournalBackend
from dicelab.tune.search import UNUSED, counts, run_search
from dicelab.tune.storage import RETRY_ENV, open_storage
from tmpfs import mounted_tmpfs, resize
from tune_tests.conftest import _Cluster
from tune_tests.test_search import _counted, load, options, settings


def dicelab(*args: str) -> list[str]:
    return [sys.executable, "-m", "dicelab", *args]


def run(
    args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        args, capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout
    )


def one_line_error(stderr: str) -> str:
    """The one error line of a command's stderr (asserting there is no traceback)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, stderr
    return errors[0]


def journal_lines_parse(path: Path) -> int:
    """Every line of a journal is a complete JSON record; their count."""
    data = path.read_bytes()
    assert data.endswith(b"\n")
    lines = data.decode().splitlines()
    for line in lines:
        assert "op_code" in json.loads(line)
    return len(lines)


def search_args(data_root: Path, out: Path, *extra: str) -> list[str]:
    return dicelab(
        "search", *settings(data_root), "--genes", "lr,dropout", "--particles", "2",
        "--threads", "1", "--out", str(out), *extra,
    )  # fmt: skip


def random_search(
    data_root: Path, out: Path, overrides: list[str], trials: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`dicelab search` with random sampling of the dropout gene over the small settings."""
    command = dicelab(
        "search", *settings(data_root, *overrides), "--genes", "dropout", "--sampler", "random",
        "--trials", trials, "--threads", "1", "--out", str(out), *extra,
    )  # fmt: skip
    return run(command)


# -- torn and damaged journals ---------------------------------------------------------------


@pytest.fixture
def finished_search(data_root: Path, tmp_path: Path) -> Path:
    """A search folder with 4 complete trials (2 generations of 2 particles)."""
    out = tmp_path / "s"
    run_search(options(data_root, out, genes=["lr", "dropout"], particles=2, generations=2))
    return out


def _complete(out: Path) -> dict[int, float | None]:
    return {t.number: t.value for t in load(out).trials if t.state == TrialState.COMPLETE}


@pytest.mark.parametrize(
    "damage",
    ["truncate 10 bytes", "partial line appended", "garbage line appended"],
)
def test_a_damaged_journal_tail_is_set_aside_not_glued_onto(
    data_root: Path, finished_search: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the next write was appended to the torn line and from then on every command
    said "not an Optuna journal file" (all trials lost). Now the torn tail is moved aside with
    a warning, the search continues, and every earlier result is kept."""
    out = finished_search
    journal = out / "study.journal"
    before = _complete(out)
    with open(journal, "r+b") as handle:
        if damage == "truncate 10 bytes":
            handle.truncate(journal.stat().st_size - 10)
        else:
            handle.seek(0, os.SEEK_END)
            handle.write(b'{"op_code":5,"worker' if damage.startswith("partial") else b"xx\n")
    opts = options(data_root, out, genes=["lr", "dropout"], particles=2, generations=3)
    with caplog.at_level(logging.WARNING):
        run_search(opts)
    assert "moved aside" in caplog.text
    journal_lines_parse(journal)
    assert (out / "study.journal.torn").stat().st_size > 0
    after = _complete(out)
    assert {n: after[n] for n in before} == before
    assert len(after) == 6  # the third generation ran
    # Every reader still works.
    assert json.loads((out / "search.json").read_text())["best"] is not None


def test_a_journal_glued_by_an_older_writer_is_repaired_with_a_backup(
    finished_search: Path,
) -> None:
    """A torn record with the next one glued onto it (what dicelab wrote before this fix) is
    mended on open: the complete record is kept, the original saved beside it."""
    journal = finished_search / "study.journal"
    lines = journal.read_bytes().split(b"\n")
    lines[5] = lines[5][: len(lines[5]) // 2] + lines[5]  # a torn copy glued before a record
    damaged = b"\n".join(lines)
    journal.write_bytes(damaged)
    with pytest.raises(ValueError):  # what Optuna alone makes of it
        optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = load(finished_search)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 4
    backups = list(finished_search.glob("study.journal.damaged-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == damaged
    journal_lines_parse(journal)


def test_an_unrecoverable_journal_is_refused_and_left_untouched(finished_search: Path) -> None:
    journal = finished_search / "study.journal"
    lines = journal.read_bytes().split(b"\n")
    lines[3] = b"this is not a record"
    damaged = b"\n".join(lines)
    journal.write_bytes(damaged)
    with pytest.raises(StorageError, match="line 4 of the journal file .* is damaged"):
        open_storage(journal)
    assert journal.read_bytes() == damaged


def test_a_failed_journal_write_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An injected ENOSPC halfway through a write: the error names the file and the reason,
    and the journal is cut back to what it was, so nothing torn is left."""
    import errno
    import io

    path = tmp_path / "j.journal"
    backend = SafeJournalBackend(str(path))
    backend.append_logs([{"op_code": 0, "study_name": "a", "directions": [1]}])
    before = path.read_bytes()

    real_open = open

    class HalfWriter(io.FileIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            super().write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    def failing_open(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if str(file) == str(path) and mode == "a+b":
            return HalfWriter(str(path), "a+")
        return real_open(file, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(StorageError, match="No space left on device.*unchanged.*Free space"):
        backend.append_logs([{"op_code": 0, "study_name": "b", "directions": [1]}])
    monkeypatch.undo()
    assert path.read_bytes() == before


def test_disk_full_during_a_search_is_one_line_and_resumes(
    data_root: Path, tmp_path: Path
) -> None:
    """A search on a 16 KB tmpfs: before, exit 1 with tracebacks (`OSError: [Errno 28]`,
    `AssertionError: Should not reach.`) and a torn journal. Now one line naming the journal,
    every line of it intact, and once space is freed the same command finishes the search
    with every earlier trial kept."""
    with mounted_tmpfs(tmp_path / "full", "size=16k") as full:
        out = full / "s"
        command = search_args(data_root, out, "--trials", "12", "--particles", "4")
        first = run(command)
        assert first.returncode == 2, first.stderr
        line = one_line_error(first.stderr)
        assert "study.journal" in line and "No space left on device" in line
        journal_lines_parse(out / "study.journal")
        kept = {t.number: t.value for t in load(out).trials if t.state == TrialState.COMPLETE}
        resize(full, "20m")  # space is freed
        again = run(command)
        assert again.returncode == 0, again.stderr
        study = load(out)
        assert {n: study.trials[n].value for n in kept} == kept
        assert sum(counts(t) for t in study.trials) == 12
        journal_lines_parse(out / "study.journal")


# -- kill -9 at random moments ---------------------------------------------------------------


@pytest.mark.slow
def test_search_killed_at_random_moments_ends_as_the_uninterrupted_one(
    data_root: Path, tmp_path: Path
) -> None:
    """SIGKILL at three seeded random moments (while training, while sampling, while writing
    the journal: wherever it lands), each followed by the same command: the journal stays
    readable and the swarm ends exactly as an uninterrupted search's."""
    extra = ("--generations", "3")
    reference = run(search_args(data_root, tmp_path / "ref", *extra))
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "killed"
    rng = random.Random(1234)
    for _ in range(3):
        process = subprocess.Popen(
            search_args(data_root, out, *extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(1.5, 5.0))  # importing takes ~1.5 s; a search ~8 s
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if (out / "study.journal").is_file():
            load(out)  # readable after every kill
    final = run(search_args(data_root, out, *extra))
    assert final.returncode == 0, final.stderr
    study = load(out)
    assert _counted(study) == _counted(load(tmp_path / "ref"))
    assert not study.get_trials(states=(TrialState.RUNNING,))


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.slow
def test_workers_stop_when_the_main_process_is_killed(data_root: Path, tmp_path: Path) -> None:
    """Before, local workers kept searching after `kill -9` of the main process."""
    process = subprocess.Popen(
        search_args(data_root, tmp_path / "s", "--workers", "2", "--generations", "50"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while time.monotonic() < deadline and len(workers) < 2:
            time.sleep(0.2)
            workers = [
                c
                for c in _children(process.pid)
                if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")
            ]
        assert len(workers) == 2, "the workers did not start"
        time.sleep(2.0)  # let them start training
        process.kill()
        process.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(_gone(w) for w in workers):
            time.sleep(0.2)
        assert all(_gone(w) for w in workers), "orphaned workers kept running"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


# -- budgets ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("budget", [3, 5])
def test_a_trial_budget_is_exact_with_two_workers(
    data_root: Path, tmp_path: Path, budget: int
) -> None:
    """`--trials 16 --workers 2` ran 17 trials: each worker checked only finished trials."""
    out = tmp_path / "s"
    result = run(
        search_args(
            data_root, out, "--sampler", "random", "--trials", str(budget), "--workers", "2"
        )
    )
    assert result.returncode == 0, result.stderr
    study = load(out)
    assert sum(counts(t) for t in study.trials) == budget
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == budget
    summary = json.loads((out / "search.json").read_text())
    assert summary["counted"] == budget and summary["trials"]["complete"] == budget


def test_killed_trials_do_not_count_against_the_budget(data_root: Path, tmp_path: Path) -> None:
    """A trial whose worker died is failed and evaluated again; the budget still gets its
    number of finished trials."""
    from dicelab.tune._pso import _compat as compat
    from dicelab.tune._pso._workers import WORKER
    from tune_tests.test_search import _dead_pid

    opts = options(data_root, tmp_path, genes=["lr"], sampler="random", trials=2)
    run_search(opts)
    study = load(tmp_path)
    orphan = study.ask()
    import socket

    dead = [socket.gethostname(), _dead_pid(), 0]
    compat.set_trial_system_attr(study, compat.trial_id(orphan), WORKER, dead)
    opts.trials = 3
    run_search(opts)
    study = load(tmp_path)
    assert study.trials[orphan.number].state == TrialState.FAIL
    assert not counts(study.trials[orphan.number])
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3


def test_what_counts_against_a_budget() -> None:
    def trial(state: TrialState, user: dict | None = None, system: dict | None = None):
        return optuna.trial.create_trial(
            state=state,
            value=0.5 if state == TrialState.COMPLETE else None,
            user_attrs=user or {},
            system_attrs=system or {},
        )

    assert counts(trial(TrialState.COMPLETE))
    assert counts(trial(TrialState.PRUNED))
    assert counts(trial(TrialState.FAIL, user={NO_RETRY: "diverged"}))
    assert not counts(trial(TrialState.FAIL))  # a killed or interrupted worker: retried
    assert not counts(trial(TrialState.PRUNED, system={UNUSED: "budget used"}))


# -- searches where nothing completes, and bad arguments --------------------------------------


def test_a_search_in_which_every_trial_diverges_ends_with_a_summary(
    data_root: Path, tmp_path: Path
) -> None:
    """Before: `ValueError: Out of range float values are not JSON compliant: nan`, no
    search.json, exit 1 with a traceback."""
    out = tmp_path / "s"
    result = random_search(
        data_root, out, ["optimizer.lr=1000", "train.reduction=sum"], "2", "--cut-threshold", "0"
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "no best configuration: 2 trials, none completed, 2 failed" in result.stdout
    assert "failed: the training loss became NaN" in result.stderr  # the progress lines
    summary = json.loads((out / "search.json").read_text())
    assert summary["best"] is None and summary["trials"]["fail"] == 2
    assert not (out / "best.yaml").exists()


def test_a_budget_inside_the_first_generation_has_no_swarm_best_yet(
    data_root: Path, tmp_path: Path
) -> None:
    """`--trials 3` with 4 particles: the swarm's best is undefined (was NaN, crashing the
    summary); the best trial is still reported."""
    out = tmp_path / "s"
    result = run(search_args(data_root, out, "--trials", "3", "--particles", "4"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "search.json").read_text())
    assert summary["swarm_best"] is None and summary["best"] is not None
    assert summary["generation"] == 0


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--cut-threshold", "nan", "--cut-threshold: got nan; must lie in [0, 1]"),
        ("--cut-threshold", "2", "--cut-threshold: got 2.0; must lie in [0, 1]"),
        ("--cut-threshold", "-5", "--cut-threshold: got -5.0; must lie in [0, 1]"),
        ("--out", "", "--out: got ''; must name a folder"),
    ],
)
def test_bad_search_numbers_are_refused_before_anything_is_written(
    data_root: Path, tmp_path: Path, flag: str, value: str, message: str
) -> None:
    """Before: `--cut-threshold nan` created the study and then refused it; 2 and -5 passed
    (2 cuts every run); `--out ""` wrote into the current folder."""
    result = run(
        dicelab("search", *settings(data_root), "--trials", "2", "--out", "s", flag, value),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert message in one_line_error(result.stderr)
    assert list(tmp_path.iterdir()) == []


def test_genes_not_searched_keep_the_base_values_in_trials_and_best(
    data_root: Path, tmp_path: Path
) -> None:
    """`search --set optimizer.lr=0.1 --genes shuffle,dropout` used lr 0.001 everywhere."""
    out = tmp_path / "s"
    result = run(
        dicelab(
            "search",
            *settings(data_root, "optimizer.lr=0.05"),
            "--genes",
            "shuffle,dropout",
            "--sampler",
            "random",
            "--trials",
            "2",
            "--threads",
            "1",
            "--out",
            str(out),
        )  # fmt: skip
    )
    assert result.returncode == 0, result.stderr
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["optimizer"]["lr"] == 0.05


# -- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password", ["SEC@RETPW", "SEC/RETPW", "SEC#RETPW", "SEC?RETPW", "SEC:RETPW", "SECRETPW"]
)
def test_no_part_of_a_password_appears_in_any_message(password: str, tmp_path: Path) -> None:
    """`postgresql://u:SEC@RETPW@127.0.0.1:1/db` printed `could not translate host name
    "RETPW@127.0.0.1"`."""
    url = f"postgresql://u:{password}@127.0.0.1:1/db"
    result = run(
        dicelab("search", "--trials", "2", "--storage", url, "--study", "x", "--out", "s"),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    one_line_error(result.stderr)
    for piece in ("SEC", "RETPW", password):
        assert piece not in result.stderr + result.stdout
    if "@" in password:
        assert "percent-encode it as %40" in result.stderr
    with pytest.raises((ConfigError, StorageError)) as caught:
        open_storage(url)
    assert "RETPW" not in str(caught.value) and "SEC" not in str(caught.value)


# -- PostgreSQL stopped and restarted ----------------------------------------------------------


def _pg_search(data_root: Path, url: str, out: Path, *extra: str) -> list[str]:
    return search_args(data_root, out, "--storage", url, "--study", "s", *extra)


def _pg_study(url: str) -> optuna.Study:
    return optuna.load_study(study_name="s", storage=open_storage(url))


@pytest.mark.slow
def test_a_postgres_outage_is_ridden_out_by_the_workers(
    data_root: Path, postgres_cluster: _Cluster, postgres_db: str, tmp_path: Path
) -> None:
    """Before: 14 chained tracebacks 12 s into a 2-worker search when the server stopped.
    Now the workers retry, one warning says the database was lost and one that it is back,
    and the search ends with exactly its budget and no duplicate particle."""
    command = _pg_search(
        data_root, postgres_db, tmp_path / "s", "--workers", "2", "--generations", "4"
    )
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if len(_pg_study(postgres_db).get_trials(states=(TrialState.COMPLETE,))) >= 2:
                    break
            time.sleep(0.3)
        postgres_cluster.stop("fast")
        time.sleep(5)
    finally:
        postgres_cluster.restart()
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "lost the database" in err and "is back after" in err
    study = _pg_study(postgres_db)
    assert len(_counted(study)) == 8  # 4 generations x 2 particles, each counted once
    assert not study.get_trials(states=(TrialState.RUNNING,))


@pytest.mark.slow
def test_a_postgres_outage_longer_than_the_retry_window_is_one_line(
    data_root: Path, postgres_cluster: _Cluster, postgres_db: str, tmp_path: Path
) -> None:
    """The server stays down past the retry window: each worker gives up with one line (no
    traceback), exit 2; after a restart the same command finishes with every trial kept."""
    # Long enough that the server stops while trials still run: 6 trials once finished
    # before the server had stopped, and the summary then met the closed server instead.
    command = _pg_search(data_root, postgres_db, tmp_path / "s", "--generations", "10")
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, RETRY_ENV: "3"},
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if _pg_study(postgres_db).get_trials(states=(TrialState.COMPLETE,)):
                    break
            time.sleep(0.3)
        kept = {
            t.number: t.value
            for t in _pg_study(postgres_db).get_trials(states=(TrialState.COMPLETE,))
        }
        postgres_cluster.stop("fast")
        _, err = process.communicate(timeout=120)
    finally:
        postgres_cluster.restart()
    assert process.returncode == 2, err
    line = one_line_error(err)
    assert "lost the database" in line and "run the same command again" in line
    again = run(command)
    assert again.returncode == 0, again.stderr
    study = _pg_study(postgres_db)
    assert {n: study.trials[n].value for n in kept} == kept
    assert len(_counted(study)) == 20


def test_a_database_that_fails_while_opening_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Optuna wraps a failure inside its own session while it opens the storage (the server
    going down as the tables are checked) in StorageInternalError: before, a traceback."""

    def fails(*args: object, **kwargs: object) -> None:
        closed = sqlalchemy.exc.OperationalError(
            "COMMIT", {}, Exception("server closed the connection")
        )
        raise optuna.exceptions.StorageInternalError(
            "An exception is raised during the commit."
        ) from closed

    monkeypatch.setattr(storage_module, "RDBStorage", fails)
    with pytest.raises(
        StorageError, match="cannot open the database .*server closed the connection"
    ):
        open_storage("postgresql://u:secret@127.0.0.1:1/db")


@pytest.mark.parametrize(
    ("sampler", "particles", "trials", "generations", "expected"),
    [
        ("pso", 2, 3, None, 3),  # a budget that ends inside a generation
        ("pso", 2, None, 2, 4),  # generations alone
        ("pso", 3, 10, 2, 6),  # the generations end first
        ("pso", 3, 4, 2, 4),  # the budget ends first
        ("random", 2, 3, None, 3),
    ],
)
def test_every_combination_of_stopping_rules_counts_exactly(
    data_root: Path,
    tmp_path: Path,
    sampler: str,
    particles: int,
    trials: int | None,
    generations: int | None,
    expected: int,
) -> None:
    """The summary counts exactly what the rules allow, no trial is left unused by a single
    worker, and running the same search again adds nothing."""
    opts = options(
        data_root, tmp_path, genes=["lr"], sampler=sampler, trials=trials,
        generations=generations, quiet=True,
    )  # fmt: skip
    opts.particles = particles
    for _ in range(2):
        summary = run_search(opts)
        assert summary["counted"] == expected
        study = load(tmp_path)
        assert sum(counts(t) for t in study.trials) == expected
        assert not [t for t in study.trials if t.state == TrialState.RUNNING]


def test_a_search_at_chance_says_so_loudly(data_root: Path, tmp_path: Path) -> None:
    """Before: every trial at chance, exit 0 and a 'best' configuration that was noise, with
    nothing said. Now the summary and the command name the likely cause and the fix."""
    out = tmp_path / "s"
    result = random_search(data_root, out, ["optimizer.lr=1e-12"], "3")
    assert result.returncode == 0, result.stderr
    assert "WARNING: 3 of 3 trials scored at chance" in result.stdout
    assert "train.recalibrate_bn" in json.loads((out / "search.json").read_text())["warning"]
