"""open_storage: journal files, database URLs, and the errors a wrong ``--storage`` gives."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dicelab.exceptions import ConfigError, StorageError
from dicelab.tune.storage import describe_storage, open_storage


def _closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, read and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _objective(trial: optuna.Trial) -> float:
    """A quadratic in one parameter: enough for a study to have finished trials."""
    x = trial.suggest_float("x", -1.0, 1.0)
    return x * x


def test_journal_in_new_folder_is_shared_by_two_storages(tmp_path: Path) -> None:
    path = tmp_path / "new" / "sub" / "search.log"
    first = open_storage(str(path))
    assert isinstance(first, optuna.storages.JournalStorage)
    study = optuna.create_study(storage=first, study_name="s")
    study.optimize(_objective, n_trials=3)
    assert path.is_file()

    second = open_storage(path)  # a Path works as well as a string
    assert second is not first
    loaded = optuna.load_study(study_name="s", storage=second)
    assert [t.state for t in loaded.trials] == [TrialState.COMPLETE] * 3
    assert loaded.best_value == study.best_value


@pytest.mark.parametrize("spec", ["DIR", "redis://x", "postgres:/oops", "ftp://h/db", ""])
def test_malformed_storage_is_a_config_error(spec: str, tmp_path: Path) -> None:
    spec = str(tmp_path) if spec == "DIR" else spec
    with pytest.raises(ConfigError) as info:
        open_storage(spec)
    message = str(info.value)
    assert message.startswith("--storage: got"), message
    assert repr(spec) in message
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_scheme_hints_and_masking_in_config_errors() -> None:
    with pytest.raises(ConfigError, match="postgresql://") as info:
        open_storage("postgres://ann:s3cret@db.lab/search")
    assert "s3cret" not in str(info.value)
    assert "ann:***@db.lab" in str(info.value)
    with pytest.raises(ConfigError, match="unknown driver"):
        open_storage("postgresql+nosuchdriver://ann@db.lab/search")
    with pytest.raises(ConfigError, match="not a valid URL"):
        open_storage("postgresql://ann:s3cret@db.lab:notaport/search")


def test_describe_storage_masks_passwords() -> None:
    assert describe_storage("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert describe_storage("mysql://u:p@ss@h:3306/db") == "mysql://u:***@h:3306/db"
    assert describe_storage("postgresql://u@h/db?password=x&a=1") == (
        "postgresql://u@h/db?password=***&a=1"
    )
    assert describe_storage("postgresql://h:5432/db") == "postgresql://h:5432/db"
    assert describe_storage(Path("runs/s.log")) == str(Path("runs/s.log"))


def test_unreachable_postgres_is_a_quick_storage_error() -> None:
    port = _closed_port()
    spec = f"postgresql+psycopg2://dice:Hunter2-secret@127.0.0.1:{port}/search"
    start = time.monotonic()
    with pytest.raises(StorageError) as info:
        open_storage(spec)
    assert time.monotonic() - start < 15
    message = str(info.value)
    assert message.startswith(
        f"--storage: cannot open the database 'postgresql+psycopg2://dice:***@127.0.0.1:{port}/search'"
    )
    assert "Hunter2-secret" not in message
    assert "\n" not in message
    assert info.value.exit_code == 2


@pytest.mark.slow
def test_silent_server_times_out_instead_of_hanging() -> None:
    """A port that accepts connections but never answers (a hung server, a proxy) must fail
    after the connect timeout, not block a worker's start for ever."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever replies
        port = silent.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(StorageError, match="timeout"):
            open_storage(f"postgresql+psycopg2://dice@127.0.0.1:{port}/search")
        assert time.monotonic() - start < 15


def test_postgres_storage_has_heartbeat_and_is_shared(postgres_db: str) -> None:
    first = open_storage(postgres_db, heartbeat_interval=7, grace_period=30)
    assert isinstance(first, optuna.storages.RDBStorage)
    assert first.get_heartbeat_interval() == 7
    assert first.grace_period == 30
    assert isinstance(
        first.get_heartbeat_stale_trial_callback(),
        optuna.storages.RetryHeartbeatStaleTrialCallback,
    )
    study = optuna.create_study(storage=first, study_name="shared", direction="minimize")
    study.optimize(_objective, n_trials=2)

    second = open_storage(postgres_db)
    assert second.get_heartbeat_interval() == 60
    loaded = optuna.load_study(study_name="shared", storage=second)
    assert len(loaded.trials) == 2
    assert loaded.best_params == study.best_params


def test_missing_postgres_database_is_a_storage_error(postgres_url: str) -> None:
    spec = postgres_url.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(StorageError, match="no_such_database") as info:
        open_storage(spec)
    assert "does not exist" in str(info.value)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used:UserWarning")
def test_stale_trial_is_retried_at_most_max_retry_times(postgres_db: str) -> None:
    """A worker that stops sending heartbeats has its trial failed and re-queued, twice at
    most (MAX_RETRY): the third stale copy of the same parameters is failed, not re-queued."""
    storage = open_storage(postgres_db, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, study_name="stale")
    study.enqueue_trial({"x": 0.5})
    for _ in range(3):
        trial = study.ask()
        assert trial.suggest_float("x", -1.0, 1.0) == 0.5
        storage.record_heartbeat(trial._trial_id)  # a worker beat once, then died
        time.sleep(2.2)
        optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL] * 3
    retried = [t.system_attrs.get("failed_trial") for t in study.get_trials(deepcopy=False)]
    assert retried == [None, 0, 0]
