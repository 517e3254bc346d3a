"""The trainer's experiment trackers, read back with each tracker's own reader: TensorBoard's
EventAccumulator, MLflow's MlflowClient, W&B's offline run files; the ``log`` key outside the
configuration hash; a failing tracker that costs one warning and not the run."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from dicelab.cli import main
from dicelab.config import RunConfig, config_hash, load_config
from dicelab.exceptions import ConfigError, UnknownNameError
from dicelab.tracking import TRACKERS, TensorBoardTracker
from dicelab.train import Trainer

from .conftest import TINY, metrics_rows

#: Columns of metrics.jsonl that depend on the clock, not on the configuration.
CLOCK = ("epoch_time_s", "time_s")


def test_config_names_every_tracker() -> None:
    from typing import get_args, get_type_hints

    (literal,) = get_args(get_type_hints(RunConfig)["log"])
    assert set(get_args(literal)) == set(TRACKERS)


def test_unknown_tracker_is_a_config_error_naming_field_value_and_choices() -> None:
    with pytest.raises(UnknownNameError) as info:
        load_config(None, ["log=[tensorbord]"])
    message = str(info.value)
    assert "log[0]" in message and "'tensorbord'" in message
    assert "mlflow, tensorboard, wandb" in message and "Did you mean 'tensorboard'" in message
    with pytest.raises(ConfigError, match="must not repeat"):
        load_config(None, ["log=[mlflow, mlflow]"])


def test_log_is_not_part_of_the_config_hash(tiny: Callable[..., RunConfig]) -> None:
    plain = tiny()
    tracked = tiny("log=[tensorboard, mlflow, wandb]")
    assert tracked.log == ["tensorboard", "mlflow", "wandb"]
    assert config_hash(plain) == config_hash(tracked)
    assert config_hash(plain) != config_hash(tiny("seed=1"))


def test_resume_with_another_log_is_allowed_and_a_finished_run_is_read_back(
    tiny: Callable[..., RunConfig], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    first = Trainer(tiny("train.epochs=1"), run_dir=run).fit()
    assert first.status == "completed"
    # Same configuration, now with a tracker: resuming continues (nothing is refused) and a
    # finished run is read back, not trained again (nothing new in tensorboard/).
    again = Trainer(tiny("train.epochs=1", "log=[tensorboard]"), run_dir=run).fit(resume=True)
    assert again == first
    assert not (run / "tensorboard").exists()


def test_tensorboard_scalars_equal_metrics_jsonl(
    tiny: Callable[..., RunConfig], tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    result = Trainer(tiny("log=[tensorboard]"), run_dir=run).fit()
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    rows = metrics_rows(run)
    assert len(rows) == 2
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "updates"):
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [row["epoch"] for row in rows]
        assert [s.value for s in scalars] == pytest.approx([row[key] for row in rows], rel=1e-6)
    (test_acc,) = events.Scalars("result/test_acc")
    assert test_acc.value == pytest.approx(result.test_acc)
    # The HParams session: the plugin's summaries hold the configuration's dotted keys.
    hparams = events.PluginTagToContent("hparams")
    session = next(v for k, v in hparams.items() if k.endswith("session_start_info"))
    assert b"optimizer.lr" in session and b"model.name" in session


def test_tracking_does_not_change_the_numbers(
    tiny: Callable[..., RunConfig], tmp_path: Path
) -> None:
    Trainer(tiny(), run_dir=tmp_path / "plain").fit()
    Trainer(tiny("log=[tensorboard]"), run_dir=tmp_path / "tracked").fit()

    def numbers(run: Path) -> list[dict[str, float]]:
        return [{k: v for k, v in r.items() if k not in CLOCK} for r in metrics_rows(run)]

    assert numbers(tmp_path / "plain") == numbers(tmp_path / "tracked")


def test_mlflow_params_metric_history_and_result(
    tiny: Callable[..., RunConfig], tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    result = Trainer(tiny("log=[mlflow]", "optimizer.lr=0.05"), run_dir=run).fit()
    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dicelab")
    assert experiment is not None
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "run" and found.info.status == "FINISHED"
    params = found.data.params
    assert params["optimizer.lr"] == "0.05" and params["model.name"] == "fc"
    assert params["config_hash"] == result.config_hash
    rows = metrics_rows(run)
    for key in ("train_loss", "val_acc"):
        history = client.get_metric_history(found.info.run_id, key)
        assert [(m.step, m.value) for m in history] == [(r["epoch"], r[key]) for r in rows]
    assert found.data.metrics["result/test_acc"] == pytest.approx(result.test_acc)
    assert found.data.metrics["result/epochs_completed"] == 2


def test_wandb_offline_run_files(tiny: Callable[..., RunConfig], tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    run = tmp_path / "run"
    Trainer(tiny("log=[wandb]"), run_dir=run).fit()
    (offline,) = (run / "wandb").glob("offline-run-*")
    (records,) = offline.glob("run-*.wandb")
    # wandb 0.31 reads its record log only in its Go core; its records keep keys and the
    # JSON text of values, so the history and summary are found in the file's bytes.
    data = records.read_bytes()
    assert b"optimizer.lr" in data and b"result/test_acc" in data
    for row in metrics_rows(run):
        assert json.dumps(row["val_acc"]).encode() in data


class _Broken(TensorBoardTracker):
    """TensorBoard whose second epoch finds the disk full."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:  # type: ignore[override]
        if step == 2:
            raise OSError(28, "No space left on device")
        super().log_metrics(metrics, step)


def test_a_failing_tracker_warns_once_and_the_run_continues(
    tiny: Callable[..., RunConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setitem(TRACKERS, "tensorboard", _Broken)
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="dicelab.tracking"):
        result = Trainer(tiny("log=[tensorboard]", "train.epochs=3"), run_dir=run).fit()
    assert result.status == "completed" and result.epochs_completed == 3
    assert len(metrics_rows(run)) == 3 and (run / "result.json").is_file()
    (record,) = caplog.records
    assert "tensorboard logging failed" in record.getMessage()
    assert "No space left on device" in record.getMessage()


def test_trackers_of_a_run_without_a_folder_are_named_as_recording_nothing(
    tiny: Callable[..., RunConfig], caplog: pytest.LogCaptureFixture
) -> None:
    """A run without a folder has nowhere to track: before, log= was silently ignored."""
    with caplog.at_level(logging.WARNING, logger="dicelab.train.trainer"):
        result = Trainer(tiny("log=[tensorboard]", "train.epochs=1")).fit()
    assert result.status == "completed"
    (record,) = caplog.records
    assert "log=['tensorboard'] records nothing" in record.getMessage()
    assert "--out" in record.getMessage()


def test_missing_package_exits_2_naming_the_extra(
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    sets = [arg for s in [*TINY, f"data.root={data_root}", "log=[wandb]"] for arg in ("--set", s)]
    code = main(["train", *sets, "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert 'pip install "dicelab[wandb]"' in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # refused before anything was written
