"""MLflow: parameters, metric histories per epoch and the final metrics of each run."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any, cast

from dicelab.tracking._base import Param, Tracker

#: MLflow takes at most this many parameters (and metrics) in one ``log_batch`` call.
_BATCH = 100

#: How :meth:`MLflowTracker.end` maps a dicelab status onto an MLflow run status.
_STATUS = {"completed": "FINISHED", "stopped": "FINISHED", "interrupted": "KILLED"}


@contextlib.contextmanager
def _quiet_schema_setup() -> Iterator[None]:
    """MLflow and alembic announce at INFO level every table they create in a new database;
    on the terminal of a training run that is noise, so those loggers say warnings only."""
    loggers = [logging.getLogger(n) for n in ("mlflow.store.db.utils", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


class MLflowTracker(Tracker):
    """Records runs with ``mlflow.tracking.MlflowClient`` (no global active run).

    Where: the tracking URI in ``MLFLOW_TRACKING_URI`` when set, else an SQLite store in
    ``<root>/mlruns/mlflow.db`` with artifacts in ``<root>/mlruns/artifacts`` (MLflow 3 keeps
    the plain-file ``./mlruns`` store in maintenance mode and refuses it by default). Browse it
    with ``mlflow ui --backend-store-uri sqlite:///<root>/mlruns/mlflow.db``. Parameters are
    the configuration's dotted keys (a search's trials: the genes in readable values); each
    epoch's metrics are logged with step = epoch; the result's numbers as ``result/<name>``.
    """

    name = "mlflow"
    package = "mlflow"
    extra = "tracking"

    def start(self, name: str, params: Mapping[str, Param]) -> None:
        from mlflow.entities import Param as MLflowParam
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        artifacts = None
        if not uri:
            folder = (self.root / "mlruns").resolve()
            folder.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{folder / 'mlflow.db'}"
            artifacts = (folder / "artifacts").as_uri()
        with _quiet_schema_setup():
            self._client: Any = cast(Any, MlflowClient(tracking_uri=uri))
            found = self._client.get_experiment_by_name(self.experiment)
            if found is None:
                try:
                    experiment = self._client.create_experiment(
                        self.experiment, artifact_location=artifacts
                    )
                except MlflowException:  # another worker created it first
                    experiment = self._client.get_experiment_by_name(self.experiment).experiment_id
            else:
                experiment = found.experiment_id
        run = self._client.create_run(experiment, run_name=name)
        self._id = run.info.run_id
        self._step = 0
        items = [MLflowParam(key, str(value)) for key, value in params.items()]
        for i in range(0, len(items), _BATCH):
            self._client.log_batch(self._id, params=items[i : i + _BATCH])

    def _metrics(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(key, value, now, step) for key, value in values.items()]
        for i in range(0, len(items), _BATCH):
            self._client.log_batch(self._id, metrics=items[i : i + _BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._metrics(metrics, step)
        self._step = step

    def log_result(self, result: Mapping[str, float]) -> None:
        self._metrics({f"result/{key}": value for key, value in result.items()}, self._step)

    def end(self, status: str) -> None:
        self._client.set_tag(self._id, "dicelab.status", status)
        self._client.set_terminated(self._id, status=_STATUS.get(status, "FAILED"))
