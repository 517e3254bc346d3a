"""``dicelab search`` records one tracker run per trial (its genes in readable values and its
score), ``dicelab evaluate`` one per retraining run; trackers never define a study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from dicelab.cli import main
from dicelab.config import load_config, to_dict
from dicelab.tune.search import SearchOptions, options_from_study
from dicelab.tune.storage import open_storage

from .conftest import TINY


def _sets(data_root: Path, *extra: str) -> list[str]:
    return [arg for s in [*TINY, f"data.root={data_root}", *extra] for arg in ("--set", s)]


def test_trackers_do_not_define_a_study(data_root: Path) -> None:
    plain = load_config(None, [*TINY, f"data.root={data_root}"])
    tracked = load_config(None, [*TINY, f"data.root={data_root}", "log=[tensorboard]"])
    one = SearchOptions(config=to_dict(plain), genes=["lr"])
    two = SearchOptions(config=to_dict(tracked), genes=["lr"])
    assert one.definition() == two.definition()


def test_search_logs_each_trial_and_evaluate_each_run(data_root: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = tmp_path / "search"
    common = ["--out", str(out), "--threads", "1", "--quiet", "--cut-threshold", "0"]
    search = ["search", *common, "--particles", "2", "--generations", "1", "--genes", "lr"]
    assert main([*search, *_sets(data_root, "log=[tensorboard, mlflow]")]) == 0
    study = optuna.load_study(study_name="search", storage=open_storage(out / "study.journal"))
    trials = {f"search-trial-{t.number:04d}": t for t in study.trials}
    assert len(trials) == 2

    # TensorBoard: one folder per trial; its HParams session holds the readable genes.
    for name, trial in trials.items():
        events = EventAccumulator(str(out / "tensorboard" / name))
        events.Reload()
        (value,) = events.Scalars("result/value")
        assert value.value == pytest.approx(trial.value)
        assert [s.step for s in events.Scalars("val_acc")] == [1, 2]
        content = events.PluginTagToContent("hparams")
        start = next(v for k, v in content.items() if k.endswith("session_start_info"))
        session = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info
        assert session.hparams["lr"].string_value == trial.user_attrs["lr"]
        shown = session.hparams["lr"].string_value  # 10^-x as a rate ("8.33e-3"), not the gene
        assert "e-" in shown and float(shown) == pytest.approx(10 ** -trial.params["lr"], rel=0.01)

    # MLflow: one run per trial in <out>/mlruns, params in readable values, the score.
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("search")
    assert experiment is not None
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == set(trials)
    for name, trial in trials.items():
        assert runs[name].data.params["lr"] == trial.user_attrs["lr"]
        assert runs[name].data.params["trial"] == str(trial.number)
        assert runs[name].data.metrics["result/value"] == pytest.approx(trial.value)
        history = client.get_metric_history(runs[name].info.run_id, "val_acc")
        assert [m.step for m in history] == [1, 2]

    # evaluate: the search's trackers, each retraining run in <out>/evaluate.
    assert options_from_study(str(out), None, "search").config["log"] == ["tensorboard", "mlflow"]
    evaluate = ["evaluate", "--out", str(out), "--quiet", "--epochs", "1", "--repeats", "1"]
    assert main(evaluate) == 0
    for run in ("best-seed0", "baseline-seed0"):
        events = EventAccumulator(str(out / "evaluate" / "tensorboard" / run))
        events.Reload()
        assert [s.step for s in events.Scalars("train_loss")] == [1]
        assert events.Scalars("result/test_acc")
    evaluated = MlflowClient(tracking_uri=f"sqlite:///{out / 'evaluate' / 'mlruns' / 'mlflow.db'}")
    dicelab = evaluated.get_experiment_by_name("dicelab")
    assert dicelab is not None
    names = {r.info.run_name for r in evaluated.search_runs([dicelab.experiment_id])}
    assert names == {"best-seed0", "baseline-seed0"}
