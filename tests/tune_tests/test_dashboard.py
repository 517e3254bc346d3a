"""optuna-dashboard reads a dicelab search study as it is (through its WSGI app)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

from dicelab.tune import PSOSampler
from dicelab.tune.storage import open_storage

dashboard = pytest.importorskip("optuna_dashboard")


def _client(journal: Path) -> Callable[[str], dict]:
    """GET a path of optuna-dashboard's JSON API served over ``journal``."""
    app = dashboard.wsgi(open_storage(journal))

    def get(path: str) -> dict:
        environ: dict = {}
        setup_testing_defaults(environ)
        environ["PATH_INFO"] = path
        status: list[str] = []
        body = b"".join(app(environ, lambda s, headers, exc=None: status.append(s)))
        assert status == ["200 OK"], body[:300]
        return json.loads(body)

    return get


def test_optuna_dashboard_lists_the_study_and_its_pso_trials(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "study.journal")
    space = {"x": optuna.distributions.FloatDistribution(-1, 1)}
    study = optuna.create_study(
        storage=storage, study_name="search", sampler=PSOSampler(space, n_particles=3, seed=0)
    )
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=6)

    get = _client(tmp_path / "study.journal")
    summaries = get("/api/studies")["study_summaries"]
    assert [s["study_name"] for s in summaries] == ["search"]
    detail = get(f"/api/studies/{summaries[0]['study_id']}")
    assert len(detail["trials"]) == 6
    assert {t["state"] for t in detail["trials"]} == {"Complete"}
    assert detail["trials"][0]["params"][0]["name"] == "x"


def test_optuna_dashboard_shows_the_real_settings_of_a_search(
    data_root: Path, tmp_path: Path
) -> None:
    """Each dicelab trial stores its decoded settings as user attributes, so the dashboard
    shows lr 1e-3 and adam, not the gene codes 3.0 and 2.4."""
    from dicelab.tune.search import open_study, run_search
    from tune_tests.test_search import options

    opts = options(data_root, tmp_path, genes=["lr", "optimizer"], sampler="random", trials=1)
    open_study(opts).enqueue_trial({"lr": 3.0, "optimizer": 2.4})
    run_search(opts)
    get = _client(tmp_path / "study.journal")
    study_id = get("/api/studies")["study_summaries"][0]["study_id"]
    (trial,) = get(f"/api/studies/{study_id}")["trials"]
    shown = {a["key"]: a["value"] for a in trial["user_attrs"]}
    assert shown["lr"] == "1e-3" and shown["optimizer"] == "adam"
