"""The HTML report: sections from the files present, escaping, and a real browser check."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest

from dicelab.reports.html import build_report
from dicelab.tune import PSOSampler
from dicelab.tune.objective import SearchSpace
from dicelab.tune.storage import open_storage

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
HOSTILE = '<script>alert("x")</script>&'


def results_folder(folder: Path) -> Path:
    """A folder like a finished paper-1 pipeline's: a study, an evaluation, an ablation and
    an optimizer comparison (made by hand, quickly; nothing is trained)."""
    space = SearchSpace.paper(["lr", "dropout", "optimizer"]).distributions()
    study = optuna.create_study(
        storage=open_storage(folder / "study.journal"),
        study_name="search",
        direction="maximize",
        sampler=PSOSampler(space, n_particles=6, seed=0),
    )

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1, 5)
        drop = trial.suggest_float("dropout", 0, 0.5)
        trial.suggest_float("optimizer", 0, 3)
        return 0.9 - 0.05 * abs(lr - 2.5) + 0.1 * drop

    study.optimize(objective, n_trials=24)
    study.set_user_attr("note", HOSTILE)
    evaluation = {
        "study": "search",
        "best_trial": 3,
        "best_validation_accuracy": 0.95,
        "epochs": 10,
        "repeats": 2,
        "best": {"test_accuracy": [0.97, 0.98], "mean": 0.975, "std": 0.007, "error": 0.025},
        "baseline": {"test_accuracy": [0.95, 0.96], "mean": 0.955, "std": 0.007, "error": 0.045},
        "error_reduction": 1 - 0.025 / 0.045,
    }
    (folder / "evaluation.json").write_text(json.dumps(evaluation))
    rows = [
        {"name": "best", "kind": "reference", "reset": [], "mean": 0.975, "std": 0.007},
        {"name": f"without {HOSTILE}", "kind": "component", "reset": [HOSTILE], "mean": 0.96,
         "std": 0.01},
        {"name": "baseline", "kind": "reference", "reset": ["lr"], "mean": 0.955, "std": 0.007},
    ]  # fmt: skip
    for row in rows:
        row.update(test_accuracy=[row["mean"]] * 2, delta=None, delta_se=None, p_value=None)
    (folder / "ablation.json").write_text(json.dumps({"epochs": 10, "repeats": 2, "rows": rows}))
    comparison = {
        "description": "SGD against m-ARWP",
        "rows": [
            {"method": "sgd", "mean": 0.98, "std": 0.002, "test_accuracy": [0.98], "updates": 9},
            {"method": "marwp", "mean": 0.985, "std": 0.001, "test_accuracy": [0.985],
             "updates": 9},
        ],
    }  # fmt: skip
    (folder / "comparison.json").write_text(json.dumps(comparison))
    return folder


def test_report_has_every_section_and_escapes_user_text(tmp_path: Path) -> None:
    path = build_report(results_folder(tmp_path), title=f"run {HOSTILE}")
    page = path.read_text()
    for heading in (
        "Best configuration against the baseline",
        "Search",
        "Correlation with validation accuracy, by optimizer",
        "Importance",
        "Ablations",
        "Optimizer comparison",
    ):
        assert f"<h2>{heading}</h2>" in page
    assert "Relative test-error reduction: 44.4%" in page
    assert HOSTILE not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    assert len(re.findall(r"<script>", page)) == 1  # only the report's own
    assert "http://" not in page and "https://" not in page  # nothing fetched
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', page)
    assert len(images) == 5


def test_an_empty_folder_is_refused_and_no_empty_report_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dicelab.cli import main

    assert main(["report", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no results to report" in err
    assert not (tmp_path / "report.html").exists()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_headless_chromium_with_every_figure(tmp_path: Path) -> None:
    """Chromium loads the file with no network; every <img> decodes (the page records the
    count after load); the screenshot is kept in test-artifacts/report.png."""
    import os

    browser = _chromium()
    if browser is None:
        if os.environ.get("DICELAB_REQUIRE_BROWSER") == "1":
            pytest.fail("DICELAB_REQUIRE_BROWSER=1 but chromium is not installed")
        pytest.skip("chromium is not installed")
    path = build_report(results_folder(tmp_path))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run(
        [*flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    body = re.search(r'<body data-images="(\d+)" data-loaded="(\d+)"', dom)
    assert body is not None, dom[:500]
    assert body.group(1) == body.group(2) == "5"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    subprocess.run(
        [*flags, "--window-size=1200,4000", f"--screenshot={shot}", path.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000
