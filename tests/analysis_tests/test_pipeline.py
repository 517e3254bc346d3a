"""Ablation, analysis and the one-command reproductions, on tiny settings (seconds)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dicelab import reproduce as rep
from dicelab.analysis.ablation import AblationRow, ablate, category_of, markdown, variants
from dicelab.cli import main
from dicelab.config import load_config, to_dict
from dicelab.paper_space import GENES
from dicelab.reproduce import paper1
from dicelab.tune.objective import SearchSpace
from dicelab.tune.search import SearchOptions, run_search

TINY = (
    "data.name=digits",
    "device=cpu",
    "model.width=8",
    "data.train_limit=200",
    "train.recalibrate_bn=true",
)


def searched(data_root: Path, out: Path) -> SearchOptions:
    config = load_config(None, [*TINY, "train.epochs=1", f"data.root={data_root}"])
    options = SearchOptions(
        out=str(out),
        genes=["lr", "optimizer", "dropout", "shuffle", "gradient_noise"],
        particles=3,
        generations=1,
        threads=1,
        config=to_dict(config),
    )
    run_search(options)
    return options


def load_best(out: Path) -> dict[str, float]:
    import optuna

    from dicelab.tune.evaluate import best_trial
    from dicelab.tune.storage import open_storage

    study = optuna.load_study(study_name="search", storage=open_storage(out / "study.journal"))
    return dict(best_trial(study).params)


def test_categories_follow_the_techniques_and_the_authors_grouping() -> None:
    by_name = {g.name: category_of(g) for g in GENES}
    assert by_name["rotation"] == "data" and by_name["dropout"] == "model"
    assert by_name["loss_noise"] == "learning" and by_name["gradient_dropout"] == "optimization"
    assert by_name["lr"] == by_name["optimizer"] == by_name["batch"] == "optimization"


def test_variants_reset_each_changed_gene_and_each_category() -> None:
    space = SearchSpace.paper(["lr", "dropout", "shuffle", "rotation"])
    best = {"lr": 2.0, "dropout": 0.3, "shuffle": 1.0, "rotation": 0.0}  # rotation at baseline
    plan = variants(space, best)
    assert plan[0] == ("reference", "best", []) and plan[-1][1] == "baseline"
    components = {name: reset for kind, name, reset in plan if kind == "component"}
    assert components == {
        "without lr": ["lr"],
        "without dropout": ["dropout"],
        "without shuffle": ["shuffle"],
    }
    categories = {name: sorted(reset) for kind, name, reset in plan if kind == "category"}
    assert categories == {
        "without data": ["shuffle"],
        "without model": ["dropout"],
        "without optimization": ["lr"],
    }
    # a gene whose best value decodes to the baseline is not ablated
    quiet = variants(space, best, inactive=["shuffle"])
    assert ("component", "without shuffle", ["shuffle"]) not in quiet
    assert all(kind != "category" or "shuffle" not in reset for kind, _, reset in quiet)


def test_ablate_retrains_every_variant_and_reports_changes(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = searched(data_root, tmp_path)
    rows = ablate(options, epochs=1, repeats=2)
    best = rows[0]
    assert best.name == "best" and best.delta is None
    for row in rows[1:]:
        assert row.delta == pytest.approx(row.mean - best.mean)
        assert row.delta_se == pytest.approx(math.sqrt(row.std**2 / 2 + best.std**2 / 2))
        assert len(row.test_accuracy) == 2
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert [r["name"] for r in saved["rows"]] == [r.name for r in rows]
    # every ablated gene changes the configuration: the shuffle gene of the best trial rounds
    # to off when below 0.5, and is then listed as inactive instead
    best_params = load_best(tmp_path)
    for name in saved["inactive"]:
        assert f"without {name}" not in [r.name for r in rows]
    if best_params["shuffle"] < 0.5 and best_params["shuffle"] > 0:
        assert "shuffle" in saved["inactive"]
    assert (tmp_path / "ablate" / "baseline-seed0" / "result.json").is_file()
    assert "| reference | best |" in (tmp_path / "ablation.md").read_text()
    # the CLI reads the finished runs back
    assert main(["ablate", "--out", str(tmp_path), "--epochs", "1", "--repeats", "2"]) == 0
    assert "Δ ± s.e." in capsys.readouterr().out


def test_ablate_with_a_diverged_best_reports_every_row(data_root: Path, tmp_path: Path) -> None:
    """The best trial is lr 0.1 (the lr gene's end), which diverges on this task in the first
    epoch from lr 0.05 on; every variant that resets lr trains. The ablation is not cut
    short: each row is written, the best one as diverged, and no Δ is made up."""
    from optuna.trial import create_trial

    from dicelab.reports.html import build_report
    from dicelab.tune.search import open_study

    config = load_config(None, [*TINY, "data.train_limit=1000", f"data.root={data_root}"])
    options = SearchOptions(out=str(tmp_path), genes=["lr"], threads=1, config=to_dict(config))
    distributions = options.space().distributions()
    open_study(options).add_trial(
        create_trial(params={"lr": 1.0}, distributions=distributions, value=0.5)
    )
    rows = ablate(options, epochs=1, repeats=2)
    assert [r.name for r in rows] == ["best", "without lr", "without optimization", "baseline"]
    best = rows[0]
    assert best.mean is None and best.runs == 2 and [d["seed"] for d in best.diverged] == [0, 1]
    for row in rows[1:]:
        assert len(row.test_accuracy) == 2 and row.diverged == []
        assert row.delta is None and row.delta_se is None and row.p_value is None
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert saved["divergences"] == ["best: 2 of 2 runs diverged (seeds 0, 1)"]
    table = (tmp_path / "ablation.md").read_text()
    assert "| reference | best | — | diverged (2/2) | — | — |" in table
    assert "left out of the means and of Δ: best: 2 of 2 runs diverged (seeds 0, 1)." in table
    page = build_report(tmp_path).read_text()
    assert "best: 2 of 2 runs diverged (seeds 0, 1)" in page and "<td>2/2</td>" in page


def test_ablation_markdown_marks_a_partly_diverged_variant() -> None:
    best = AblationRow("reference", "best", [], [0.97, 0.98, 0.99], 0.98, 0.01, None, None,
                       None, runs=3, diverged=[])  # fmt: skip
    partly = AblationRow(
        "component", "without dropout", ["dropout"], [0.95, 0.96], 0.955, 0.0071, -0.025,
        0.008, 0.04, runs=3, diverged=[{"seed": 2, "epoch": 5, "message": "m"}],
    )  # fmt: skip
    table = markdown([best, partly], epochs=10, repeats=3)
    assert "| without dropout | dropout | 0.9550 ± 0.0071 (1/3 diverged) | -0.0250 ±" in table
    assert "of Δ: without dropout: 1 of 3 runs diverged (seed 2)." in table
    assert "diverged" not in markdown([best], epochs=10, repeats=3)


def test_analyze_command_writes_the_tables(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    searched(data_root, tmp_path)
    assert main(["analyze", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "importance needs at least 10 completed trials" in out
    for name in ("correlations.csv", "correlations.md", "analysis.json"):
        assert (tmp_path / "analysis" / name).is_file()


def test_reproduce_paper1_runs_the_whole_pipeline(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The smoke pipeline on tiny settings: search → evaluate → ablate → analyze → report."""
    tiny = rep.Paper1((*TINY, "train.epochs=1", f"data.root={data_root}"), 3, 2, None, 1, 2, 2)
    monkeypatch.setitem(rep.PAPER1_SCALES, "smoke", tiny)
    report = rep.reproduce("paper1", "smoke", out=tmp_path, workers=1, log=lambda _: None)
    page = report.read_text()
    for heading in ("Best configuration against the baseline", "Ablations", "Search"):
        assert f"<h2>{heading}</h2>" in page
    for name in ("evaluation.json", "ablation.json", "analysis/analysis.json"):
        assert (tmp_path / name).is_file()


def test_reproduce_paper1_passes_its_seed_to_the_search(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``seed`` is the search's: the study records it, and the log gives the error reduction
    with its standard error."""
    import optuna

    from dicelab.tune.storage import open_storage

    tiny = rep.Paper1((*TINY, "train.epochs=1", f"data.root={data_root}"), 2, 1, None, 1, 2, 2)
    monkeypatch.setitem(rep.PAPER1_SCALES, "smoke", tiny)
    lines: list[str] = []
    rep.reproduce("paper1", "smoke", out=tmp_path, workers=1, seed=7, log=lines.append)
    study = optuna.load_study(
        study_name="paper1", storage=open_storage(tmp_path / "study.journal")
    )
    assert study.user_attrs["dicelab"]["seed"] == 7
    assert any("error reduction" in line and "(s.e., 2 seeds)" in line for line in lines), lines


def test_reduction_words_give_the_delta_method_standard_error() -> None:
    summary = {
        "error_reduction": 0.5,
        "best": {"test_accuracy": [0.9, 0.9, 0.9, 0.9], "error": 0.1, "std": 0.01},
        "baseline": {"test_accuracy": [0.8] * 4, "error": 0.2, "std": 0.0},
    }
    # 0.5 · (0.01 / 0.1) / √4 = 2.5%
    assert paper1._reduction_words(summary) == "error reduction 50.0% ± 2.5% (s.e., 4 seeds)"
    assert paper1._reduction_words({"error_reduction": None}) == "(no errors)"


def test_reduction_words_name_the_diverged_runs() -> None:
    """The reduction over the completed runs (5 baseline seeds, 4 of the best: each side's
    own n in the standard error) says which runs it leaves out; with no completed run of a
    side there is no reduction, and the words say why."""
    summary = {
        "error_reduction": 0.5,
        "error_reduction_note": None,
        "best": {"test_accuracy": [0.9] * 4, "error": 0.1, "std": 0.01},
        "baseline": {"test_accuracy": [0.8] * 5, "error": 0.2, "std": 0.0},
        "divergences": ["best: 1 of 5 runs diverged (seed 3)"],
    }
    assert paper1._reduction_words(summary) == (
        "error reduction 50.0% ± 2.5% (s.e., 4 and 5 seeds), over the completed runs; "
        "best: 1 of 5 runs diverged (seed 3)"
    )
    gone = {
        **summary,
        "error_reduction": None,
        "error_reduction_note": "no run of best completed",
        "divergences": ["best: 5 of 5 runs diverged (seeds 0, 1, 2, 3, 4)"],
    }
    assert paper1._reduction_words(gone) == (
        "(no error reduction: no run of best completed; "
        "best: 5 of 5 runs diverged (seeds 0, 1, 2, 3, 4))"
    )


def test_smoke_scale_searches_a_task_with_headroom() -> None:
    """The demo's data is far from its ceiling (mnist1d), its fitness and evaluation train
    equally long, and the first particle is the baseline."""
    smoke = rep.PAPER1_SCALES["smoke"]
    assert "data.name=mnist1d" in smoke.settings and smoke.baseline_start
    assert f"train.epochs={smoke.eval_epochs}" in smoke.settings


def test_reproduce_paper3_compares_optimizers_with_curvature(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = rep.Paper3(
        (*TINY, f"data.root={data_root}", "optimizer.name=momentum", "optimizer.lr=0.01",
         "train.reduction=mean"),
        1, 2, methods=("none", "mrwp"), hessian_examples=100, trace_samples=4,
        landscape_steps=5,
    )  # fmt: skip
    monkeypatch.setitem(rep.PAPER3_SCALES, "smoke", tiny)
    report = rep.reproduce("paper3", "smoke", out=tmp_path, workers=1, log=lambda _: None)
    comparison = json.loads((tmp_path / "comparison.json").read_text())
    rows = {r["method"]: r for r in comparison["rows"]}
    assert rows["none"]["updates"] == rows["mrwp"]["updates"]  # twice the epochs, same updates
    for method in ("none", "mrwp"):
        hessian = json.loads((tmp_path / "hessian" / f"{method}.json").read_text())
        assert len(hessian["eigenvalues"]) == 1
        assert (tmp_path / "landscape" / f"{method}.json").is_file()
    page = report.read_text()
    for heading in ("Optimizer comparison", "Loss landscapes", "Hessian spectra"):
        assert f"<h2>{heading}</h2>" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reproduce", "paper2"], "paper: got 'paper2'"),
        (["reproduce", "paper1", "--scale", "huge"], "--scale: got 'huge'"),
        (["reproduce", "paper1", "--scale", "full"], "--storage: got None"),
        (["reproduce", "paper1", "--scale", "full", "--benchmark", "svhn"], "--benchmark: got"),
        (["reproduce", "paper1", "--benchmark", "mnist", "--dry-run"], "--benchmark: got"),
        (["reproduce", "paper3", "--scale", "full", "--benchmark", "mnist"], "--benchmark: got"),
    ],
)
def test_reproduce_bad_arguments(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("paper", "benchmark", "expected"),
    [("paper1", "fashion-mnist", "data: fashion-mnist"), ("paper1", None, "data: cifar10")],
)
def test_reproduce_dry_run_prints_the_chosen_protocol_and_trains_nothing(
    paper: str,
    benchmark: str | None,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["reproduce", paper, "--scale", "full", "--dry-run"]
    assert main(args + (["--benchmark", benchmark] if benchmark else [])) == 0
    out = capsys.readouterr().out
    assert expected in out and "cost:" in out
    assert list(tmp_path.iterdir()) == []  # no run folder, no data


def test_hessian_and_landscape_commands_on_a_trained_run(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dicelab hessian` and `dicelab landscape` (1-D, 2-D and between two runs) read a
    finished run folder and write their JSON (and plot) without changing the run."""
    runs = []
    for seed in (0, 1):
        out = tmp_path / f"run{seed}"
        args = ["train", "--quiet", "--threads", "1", "--out", str(out), "--set", f"seed={seed}"]
        for setting in (*TINY, "train.epochs=1", f"data.root={data_root}"):
            args += ["--set", setting]
        assert main(args) == 0
        runs.append(out)
    weights = (runs[0] / "model.pt").read_bytes()
    common = ["--examples", "100", "--out", str(tmp_path / "res")]
    assert main(["hessian", str(runs[0]), *common, "--trace-samples", "4", "--name", "h"]) == 0
    hessian = json.loads((tmp_path / "res" / "hessian" / "h.json").read_text())
    assert len(hessian["eigenvalues"]) == 1 and hessian["trace"]["stderr"] > 0
    for extra, name in (
        (["--dims", "1", "--steps", "5"], "one"),
        (["--dims", "2", "--steps", "4"], "two"),
        (["--towards", str(runs[1]), "--steps", "5"], "between"),
    ):
        assert main(["landscape", str(runs[0]), *common, *extra, "--name", name]) == 0
        saved = json.loads((tmp_path / "res" / "landscape" / f"{name}.json").read_text())
        assert saved and (tmp_path / "res" / "landscape" / f"{name}.png").is_file()
    assert (runs[0] / "model.pt").read_bytes() == weights
    capsys.readouterr()
    assert main(["hessian", str(tmp_path), "--examples", "10"]) == 2
    assert "is not a finished run folder" in capsys.readouterr().err
