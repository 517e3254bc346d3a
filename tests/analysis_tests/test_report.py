"""The HTML report: sections from the files present, escaping, and a real browser check."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from dicelab.analysis.tables import GENERATION, UNUSED
from dicelab.reports.html import build_report
from dicelab.tune import PSOSampler
from dicelab.tune.objective import SearchSpace
from dicelab.tune.storage import open_storage

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
HOSTILE = '<script>alert("x")</script>&'


DEFINITION = {
    "sampler": "pso",
    "particles": 6,
    "sparse": 4,
    "seed": 7,
    "prune": "none",
    "cut_threshold": 0.12,
    "screen": None,
    "space": {"lr": [1.0, 5.0], "dropout": [0.0, 0.5], "optimizer": [0.0, 3.0]},
    "config": {
        "seed": 3,
        "data": {"name": "mnist5k", "train_limit": None},
        "model": {"name": f"vgg {HOSTILE}", "width": 8},
        "train": {"epochs": 4},
    },
}


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
    study.set_user_attr("dicelab", DEFINITION)
    dists = {n: FloatDistribution(d.low, d.high) for n, d in space.items()}
    params = {"lr": 2.0, "dropout": 0.1, "optimizer": 1.0}
    extra = [
        create_trial(state=TrialState.FAIL, params=params, distributions=dists,
                     system_attrs={GENERATION: 3}),
        create_trial(state=TrialState.PRUNED, params=params, distributions=dists,
                     intermediate_values={0: 0.5}, system_attrs={GENERATION: 3}),
        create_trial(state=TrialState.FAIL, params=params, distributions=dists,
                     system_attrs={GENERATION: 4, UNUSED: "budget used up"}),
    ]  # fmt: skip
    study.add_trials(extra)
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


def svgs(page: str) -> list[str]:
    """Every inline SVG of a page."""
    return re.findall(r"<svg\b.*?</svg>", page, re.S)


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
    # inside the figures (the ablation's variant name), matplotlib's SVG writer escapes it
    assert "&lt;script&gt;alert(" in "".join(svgs(page))
    assert len(re.findall(r"<script>", page)) == 1  # only the report's own
    assert "http://" not in page and "https://" not in page  # nothing fetched
    assert len(svgs(page)) == 5


def test_figures_are_inline_svg_with_text_as_text(tmp_path: Path) -> None:
    """Crisp at any zoom: vector figures, no raster image, no XML prolog inside the HTML."""
    page = build_report(results_folder(tmp_path)).read_text()
    assert "<img" not in page and "data:image/png" not in page
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page
    figures = re.findall(r"<figure><svg [^>]*>", page)
    assert len(figures) == 5
    assert all('role="img"' in f and "viewBox=" in f for f in figures)
    assert "<text" in page  # svg.fonttype 'none': labels are text, searchable and sharp
    assert "Search history of search</text>" in page


def test_header_names_dataset_model_sampler_budget_seeds_versions_and_date(
    tmp_path: Path,
) -> None:
    import torch

    from dicelab.version import __version__

    page = build_report(results_folder(tmp_path)).read_text()
    header = page[page.index('<table class="about">') : page.index("</table>")]
    assert "<th>dataset</th><td>mnist5k</td>" in header
    assert f"<th>model</th><td>vgg {html.escape(HOSTILE)}, width 8</td>" in header
    assert "4 per search trial" in header and "10 for the evaluation" in header
    assert "<th>sampler</th><td>pso (sparse start 4, cut threshold 0.12)</td>" in header
    assert "3: lr, dropout, optimizer" in header
    # the unused trial is left out: 24 + 1 failed + 1 pruned
    assert "26 trials (24 complete, 1 fail, 1 pruned)" in header
    assert "6 particles × 4 generations" in header
    assert "sampler 7, training 3, evaluation 3–4" in header
    assert (
        f"dicelab {__version__}, torch {torch.__version__}, optuna {optuna.__version__}" in header
    )
    assert re.search(r"search ran \d{4}-\d\d-\d\d \d\d:\d\d", header)
    assert re.search(r"report written \d{4}-\d\d-\d\d \d\d:\d\d UTC", header)
    # the header and the summary come before the first section
    assert page.index('<table class="about">') < page.index('id="summary"') < page.index("<h2>")


def test_header_counts_come_from_search_json(tmp_path: Path) -> None:
    folder = results_folder(tmp_path)
    (folder / "search.json").write_text(json.dumps({"counted": 25, "trials": {}}))
    assert "25 counted against the budget" in build_report(folder).read_text()


def baseline_best_folder(folder: Path, best: list[float], baseline: list[float]) -> Path:
    """A study whose best trial is the no-randomness baseline, and an evaluation."""
    folder.mkdir(exist_ok=True)
    space = SearchSpace.paper(["lr", "dropout", "optimizer", "weight_noise"])
    dists = space.distributions()
    study = optuna.create_study(
        storage=open_storage(folder / "study.journal"), study_name="search", direction="maximize"
    )
    study.set_user_attr("dicelab", {**DEFINITION, "baseline_start": True})
    trials = [
        ({"lr": 2.0, "dropout": 0.3, "optimizer": 2.5, "weight_noise": 2.0}, 0.8),
        (space.baseline_params(), 0.9),  # the best
        ({"lr": 4.0, "dropout": 0.1, "optimizer": 1.5, "weight_noise": 3.0}, 0.7),
    ]
    study.add_trials([create_trial(params=p, distributions=dists, value=v) for p, v in trials])
    mean = sum(best) / len(best)
    base_mean = sum(baseline) / len(baseline)
    evaluation = {
        "epochs": 10,
        "repeats": len(best),
        "best": {"test_accuracy": best, "mean": mean, "std": 0.01, "error": 1 - mean},
        "baseline": {"test_accuracy": baseline, "mean": base_mean, "std": 0.01,
                     "error": 1 - base_mean},
        "error_reduction": 1 - (1 - mean) / (1 - base_mean),
    }  # fmt: skip
    (folder / "evaluation.json").write_text(json.dumps(evaluation))
    return folder


def summary_of(page: str) -> str:
    return page[page.index('id="summary"') : page.index("</div>", page.index('id="summary"'))]


def test_a_best_that_is_the_baseline_and_a_not_significant_difference_are_said(
    tmp_path: Path,
) -> None:
    folder = baseline_best_folder(tmp_path, [0.95, 0.96, 0.94], [0.95, 0.94, 0.96])
    summary = summary_of(build_report(folder).read_text())
    assert "The best configuration is the no-randomness baseline: trial 1" in summary
    assert "baseline start" in summary
    assert "Not significant" in summary and "p = 1" in summary
    assert "includes 0" in summary


def test_a_significant_gain_a_loss_and_a_single_seed_are_said(tmp_path: Path) -> None:
    gain = baseline_best_folder(tmp_path / "gain", [0.97, 0.975, 0.98], [0.9, 0.905, 0.91])
    assert "beats the baseline on the test set" in summary_of(build_report(gain).read_text())
    loss = baseline_best_folder(tmp_path / "loss", [0.9, 0.905, 0.91], [0.97, 0.975, 0.98])
    assert "A negative result" in summary_of(build_report(loss).read_text())
    one = baseline_best_folder(tmp_path / "one", [0.97], [0.9])
    assert "cannot be tested for significance" in summary_of(build_report(one).read_text())


def test_a_best_that_is_not_the_baseline_gives_no_null_sentence(tmp_path: Path) -> None:
    page = build_report(results_folder(tmp_path)).read_text()
    assert "is the no-randomness baseline" not in page


def test_diverged_retraining_runs_are_named_and_left_out_of_every_mean(tmp_path: Path) -> None:
    """A partly diverged best, a variant and a method whose every run diverged: the report is
    written, nothing shows NaN, and each section names the diverged seeds."""
    folder = results_folder(tmp_path)
    evaluation = json.loads((folder / "evaluation.json").read_text())
    evaluation["best"].update(
        runs=3, diverged=[{"seed": 5, "epoch": 4, "message": "the training loss became NaN"}]
    )
    (folder / "evaluation.json").write_text(json.dumps(evaluation))
    ablation = json.loads((folder / "ablation.json").read_text())
    for row in ablation["rows"]:
        row.update(runs=2, diverged=[])
    ablation["rows"][1].update(
        test_accuracy=[], mean=None, std=None,
        diverged=[{"seed": s, "epoch": 1, "message": "m"} for s in (3, 4)],
    )  # fmt: skip
    (folder / "ablation.json").write_text(json.dumps(ablation))
    comparison = json.loads((folder / "comparison.json").read_text())
    for row in comparison["rows"]:
        row.update(runs=1, diverged=[])
    comparison["rows"].append(
        {"method": "rwp", "mean": None, "std": None, "test_accuracy": [], "updates": None,
         "runs": 1, "diverged": [{"seed": 0, "epoch": 2, "message": "m"}]}
    )  # fmt: skip
    (folder / "comparison.json").write_text(json.dumps(comparison))
    page = build_report(folder).read_text()
    assert page.count("NaN") == page.count("NaN or infinite") and "nan" not in page
    assert "best: 1 of 3 runs diverged (seed 5)" in summary_of(page)
    assert "Relative test-error reduction: 44.4%" in page
    without = html.escape(f"without {HOSTILE}")
    assert f"{without}: 2 of 2 runs diverged (seeds 3, 4)" in page
    assert "rwp: 1 of 1 runs diverged (seed 0)" in page
    assert page.count("<td>2/2</td>") == 1 and page.count("<td>1/1</td>") == 1
    assert len(svgs(page)) == 5  # the ablation and the comparison still have their figures


def test_an_evaluation_whose_best_never_completed_says_why(tmp_path: Path) -> None:
    folder = results_folder(tmp_path)
    evaluation = json.loads((folder / "evaluation.json").read_text())
    evaluation["best"] = {"test_accuracy": [], "mean": None, "std": None, "error": None,
                          "runs": 2, "diverged": [{"seed": 3}, {"seed": 4}]}  # fmt: skip
    evaluation["error_reduction"] = None
    evaluation["error_reduction_note"] = "no run of best completed"
    (folder / "evaluation.json").write_text(json.dumps(evaluation))
    page = build_report(folder).read_text()
    assert "Relative test-error reduction: n/a (no run of best completed)" in page
    assert "every run of the best configuration diverged" in summary_of(page)


def test_best_trial_table_shows_real_values_and_gene_names(tmp_path: Path) -> None:
    page = build_report(results_folder(tmp_path)).read_text()
    study = optuna.load_study(
        study_name="search", storage=open_storage(tmp_path / "study.journal")
    )
    best = max((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    table = page[page.index(f"<p>Best trial {best.number}:") :]
    table = table[: table.index("</table>")]
    assert "<th>gene</th><th>value</th><th>baseline</th>" in table
    lr = 10 ** -best.params["lr"]
    from dicelab.paper_space import readable

    shown = readable(best.params)
    assert f"<td>lr</td><td>{shown['lr']}</td><td>1e-3</td>" in table
    assert "e-" in shown["lr"] and abs(float(shown["lr"]) - lr) / lr < 0.01
    assert f"<td>optimizer</td><td>{shown['optimizer']}</td><td>sgd</td>" in table
    assert shown["optimizer"] in ("sgd", "momentum", "adam")
    assert "<td>dropout</td>" in table
    for code in best.params.values():  # no gene code, in any precision the old table used
        assert f"{code:.4g}" not in table


def test_history_is_coloured_by_generation_with_pruned_and_failed_marked(tmp_path: Path) -> None:
    page = build_report(results_folder(tmp_path)).read_text()
    history = next(s for s in svgs(page) if "Search history" in s)
    assert "PSO generation</text>" in history
    assert "pruned (1; last value)</text>" in history
    assert "failed (1; no value)</text>" in history
    assert "completed (24)</text>" in history
    assert "coloured by PSO generation" in page


def test_a_random_search_history_has_one_colour(tmp_path: Path) -> None:
    dists = {"lr": FloatDistribution(1, 5)}
    study = optuna.create_study(
        storage=open_storage(tmp_path / "study.journal"), study_name="search", direction="maximize"
    )
    study.set_user_attr("dicelab", {**DEFINITION, "sampler": "random"})
    study.add_trials(
        [
            create_trial(params={"lr": 1 + i / 4}, distributions=dists, value=i / 20)
            for i in range(12)
        ]
    )
    page = build_report(tmp_path).read_text()
    assert "PSO generation" not in page and "one colour" in page
    assert "particles" not in page[: page.index("</table>")]


def test_heatmap_shows_n_per_cell_and_names_the_correction(tmp_path: Path) -> None:
    page = build_report(results_folder(tmp_path)).read_text()
    heatmap = next(s for s in svgs(page) if "Spearman correlation" in s)
    assert "n=24</text>" in heatmap
    assert "Benjamini–Hochberg" in heatmap
    caption = re.search(r"<figcaption>(Spearman ρ of each gene.*?)</figcaption>", page)
    assert caption is not None
    assert "Benjamini–Hochberg correction over all" in caption.group(1)
    assert "n is the number of trials in each cell" in caption.group(1)


def test_raw_tables_are_collapsed(tmp_path: Path) -> None:
    page = build_report(results_folder(tmp_path)).read_text()
    details = re.findall(r"<details><summary>(.*?)</summary><table>.*?</table></details>", page)
    assert len(details) == 4  # correlations, importance, ablations, comparison
    assert any("Benjamini–Hochberg q" in d for d in details)
    assert "<th>q_value</th>" in page


def test_ablation_bars_have_intervals_on_an_axis_through_zero(tmp_path: Path) -> None:
    from dicelab.analysis.tables import ABLATION_AXIS, plot_ablation

    folder = results_folder(tmp_path)
    rows = json.loads((folder / "ablation.json").read_text())["rows"]
    rows[1]["test_accuracy"] = [0.95, 0.97]  # spread: an interval
    rows[0]["test_accuracy"] = [0.97, 0.98]
    (ax,) = plot_ablation(rows).axes
    low, high = ax.get_xlim()
    assert low < 0 < high and math.isclose(-low, high)
    assert ax.get_xlabel() == ABLATION_AXIS and "95% CI" in ABLATION_AXIS
    assert len(ax.patches) == 2 and ax.containers  # two bars, with error bars
    (folder / "ablation.json").write_text(json.dumps({"epochs": 10, "repeats": 2, "rows": rows}))
    page = build_report(folder).read_text()
    assert "95% confidence intervals" in page and "the line at 0" in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_headless_chromium_with_every_figure(tmp_path: Path) -> None:
    """Chromium loads the file with no network; every figure renders with a size (the page
    records the count after load); the screenshot is kept in test-artifacts/report.png."""
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
        [*flags, "--window-size=1200,6000", f"--screenshot={shot}", path.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_report_of_a_real_tiny_search(data_root: Path, tmp_path: Path) -> None:
    """A 2-particle, 2-generation search on digits: the header is read from the study's own
    definition and search.json, and the best trial's genes are in real units."""
    from dicelab.config import load_config, to_dict
    from dicelab.tune.search import SearchOptions, run_search

    settings = ["data.name=digits", "device=cpu", "model.width=8", "data.train_limit=300",
                "train.epochs=1", f"data.root={data_root}"]  # fmt: skip
    options = SearchOptions(
        out=str(tmp_path),
        config=to_dict(load_config(None, settings)),
        genes=["lr", "optimizer", "dropout"],
        particles=2,
        generations=2,
        threads=1,
    )
    run_search(options)
    page = build_report(tmp_path).read_text()
    header = page[page.index('<table class="about">') : page.index("</table>")]
    assert "<th>dataset</th><td>digits (first 300 training examples)</td>" in header
    assert ", width 8</td>" in header and "1 per search trial" in header
    assert "<th>sampler</th><td>pso (" in header and "3: lr, optimizer, dropout" in header
    assert "4 trials (4 complete), 4 counted against the budget; 2 particles × 2 generations" in (
        header
    )
    assert "sampler 0, training 0" in header
    table = page[page.index("<p>Best trial") :]
    table = table[: table.index("</table>")]
    assert re.search(r"<td>optimizer</td><td>(sgd|momentum|adam)</td><td>sgd</td>", table)
    assert re.search(r"<td>lr</td><td>[0-9.]+e-\d</td><td>1e-3</td>", table)
    assert "PSO generation</text>" in page
