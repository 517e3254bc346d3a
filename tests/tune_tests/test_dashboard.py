"""optuna-dashboard reads a dicelab search study as it is (through its WSGI app)."""

from __future__ import annotations

import json
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

from dicelab.tune import PSOSampler
from dicelab.tune.storage import open_storage

dashboard = pytest.importorskip("optuna_dashboard")


def test_optuna_dashboard_lists_the_study_and_its_pso_trials(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "study.journal")
    space = {"x": optuna.distributions.FloatDistribution(-1, 1)}
    study = optuna.create_study(
        storage=storage, study_name="search", sampler=PSOSampler(space, n_particles=3, seed=0)
    )
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=6)

    app = dashboard.wsgi(open_storage(tmp_path / "study.journal"))

    def get(path: str) -> dict:
        environ: dict = {}
        setup_testing_defaults(environ)
        environ["PATH_INFO"] = path
        status: list[str] = []
        body = b"".join(app(environ, lambda s, headers, exc=None: status.append(s)))
        assert status == ["200 OK"], body[:300]
        return json.loads(body)

    summaries = get("/api/studies")["study_summaries"]
    assert [s["study_name"] for s in summaries] == ["search"]
    detail = get(f"/api/studies/{summaries[0]['study_id']}")
    assert len(detail["trials"]) == 6
    assert {t["state"] for t in detail["trials"]} == {"Complete"}
    assert detail["trials"][0]["params"][0]["name"] == "x"
