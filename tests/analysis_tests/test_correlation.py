"""Correlations, importance, tables and figures over synthetic in-memory studies (no training)."""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial
from scipy import stats

from dicelab import paper_space
from dicelab.analysis import correlation, tables
from dicelab.analysis.correlation import CorrelationRow
from dicelab.exceptions import ConfigError, UnknownNameError

optuna.logging.set_verbosity(optuna.logging.WARNING)

DISTRIBUTIONS: dict[str, BaseDistribution] = {
    g.name.replace(" ", "_"): FloatDistribution(g.low, g.high) for g in paper_space.GENES
}
SGD, MOMENTUM, ADAM = 0.5, 1.5, 2.5  # optimizer gene values: ceil → 1, 2, 3


def make_study(
    trials: list[tuple[Mapping[str, float], float | None]],
    *,
    states: Mapping[int, TrialState] | None = None,
) -> optuna.Study:
    """A maximising in-memory study with one trial per (params, value)."""
    study = optuna.create_study(direction="maximize")
    states = states or {}
    frozen = []
    for i, (params, value) in enumerate(trials):
        state = states.get(i, TrialState.COMPLETE)
        frozen.append(
            create_trial(
                state=state,
                params=dict(params),
                distributions={name: DISTRIBUTIONS[name] for name in params},
                value=value if state == TrialState.COMPLETE else None,
            )
        )
    study.add_trials(frozen)
    return study


def dropout_study(n_per_group: int = 20, n_momentum: int = 3, seed: int = 0) -> optuna.Study:
    """Accuracy rises with dropout under SGD and falls under Adam; shuffle never varies."""
    rng = np.random.default_rng(seed)
    trials: list[tuple[Mapping[str, float], float | None]] = []
    for optimizer, sign, n in ((SGD, 1.0, n_per_group), (ADAM, -1.0, n_per_group)):
        for _ in range(n):
            dropout = float(rng.uniform(0, 0.5))
            params = {
                "shuffle": 0.0,
                "dropout": dropout,
                "lr": float(rng.uniform(1, 5)),
                "optimizer": optimizer,
            }
            noise = float(rng.normal(0, 0.005))
            trials.append((params, 0.6 + sign * 0.5 * dropout + noise))
    for _ in range(n_momentum):
        params = {
            "shuffle": 0.0,
            "dropout": float(rng.uniform(0, 0.5)),
            "lr": float(rng.uniform(1, 5)),
            "optimizer": MOMENTUM,
        }
        trials.append((params, float(rng.uniform(0.4, 0.8))))
    return make_study(trials)


def by_key(rows: list[CorrelationRow]) -> dict[tuple[str, str], CorrelationRow]:
    return {(r.group, r.gene): r for r in rows}


# --- strengths -------------------------------------------------------------------------------


def test_strengths_of_a_hand_made_trial() -> None:
    params = {
        "shuffle": 0.6,
        "flip": 1.0,
        "dropout": 0.3,
        "lr": 3.0,
        "batch": 300.4,
        "weight_noise": 6.0,
        "optimizer": 2.5,
    }
    got = correlation.strengths(params)
    assert got == pytest.approx(
        {
            "shuffle": 1.0,
            "flip": 0.0,
            "dropout": 0.3,
            "lr": 1e-3,
            "batch": 300.0,
            "weight_noise": 0.0,
        }
    )
    assert "optimizer" not in got
    assert list(got) == ["shuffle", "flip", "dropout", "lr", "batch", "weight_noise"]


@pytest.mark.parametrize(
    ("gene", "raw", "expected"),
    [
        ("weight_noise", 6.0, 0.0),
        ("weight_noise", 2.0, 0.01),
        ("weight_noise", 5.99, 10**-5.99),
        ("lr", 3.0, 1e-3),
        ("lr", 1.0, 0.1),
        ("flip", 1.0, 0.0),
        ("flip", 0.0, 0.0),
        ("flip", 1.01, 1.0),
        ("flip", 3.0, 1.0),
        ("shuffle", 0.4, 0.0),
        ("shuffle", 0.6, 1.0),
        ("batch", 1023.6, 1024.0),
        ("input_noise", 0.25, 0.25),
        ("gradient_dropout", 0.7, 0.5),  # clipped to the bound, as the swarm does
    ],
)
def test_strength_of_one_gene(gene: str, raw: float, expected: float) -> None:
    assert correlation.strengths({gene: raw}) == {gene: pytest.approx(expected)}


def test_strengths_ignore_non_genes_and_accept_spaced_names() -> None:
    assert correlation.strengths({"input_noise": 0.2, "not_a_gene": 1.0}) == {"input_noise": 0.2}


@pytest.mark.parametrize(
    ("raw", "name"),
    [(0.0, "sgd"), (1.0, "sgd"), (1.2, "momentum"), (2.0, "momentum"), (2.1, "adam")],
)
def test_optimizer_of(raw: float, name: str) -> None:
    assert correlation.optimizer_of({"optimizer": raw, "lr": 2.0}) == name


def test_optimizer_defaults_to_the_baseline_sgd() -> None:
    assert correlation.optimizer_of({"dropout": 0.1}) == "sgd"


def test_parameter_names_match_the_search_space() -> None:
    from dicelab.tune.objective import SearchSpace

    assert set(DISTRIBUTIONS) == {g.param for g in paper_space.GENES}
    assert set(DISTRIBUTIONS) == set(SearchSpace.paper().distributions())


# --- correlations ----------------------------------------------------------------------------


def test_module_docstring_warns_about_the_sampling_confound() -> None:
    doc = correlation.__doc__ or ""
    assert "confounded" in doc and "not causal" in doc and "PSO" in doc


def test_correlation_sign_follows_the_optimizer() -> None:
    rows = by_key(correlation.correlations(dropout_study()))
    sgd, adam = rows["sgd", "dropout"], rows["adam", "dropout"]
    assert sgd.rho is not None and sgd.rho > 0.8
    assert adam.rho is not None and adam.rho < -0.8
    assert sgd.p_value is not None and sgd.p_value < 1e-4
    assert adam.p_value is not None and adam.p_value < 1e-4
    assert sgd.n == adam.n == 20
    assert sgd.note == adam.note == ""
    assert rows["all", "dropout"].n == 43
    assert {g for g, _ in rows} == {"all", "sgd", "momentum", "adam"}
    assert "optimizer" not in {gene for _, gene in rows}


def test_constant_gene_gives_no_rho_and_a_note() -> None:
    rows = by_key(correlation.correlations(dropout_study()))
    for group in ("all", "sgd", "adam"):
        row = rows[group, "shuffle"]
        assert row.rho is None and row.p_value is None
        assert "constant" in row.note


def test_small_group_gives_a_note() -> None:
    rows = by_key(correlation.correlations(dropout_study(n_momentum=3), min_trials=5))
    row = rows["momentum", "dropout"]
    assert row.rho is None and row.p_value is None and row.n == 3
    assert "fewer than 5" in row.note
    rows = by_key(correlation.correlations(dropout_study(n_momentum=3), min_trials=3))
    assert rows["momentum", "dropout"].rho is not None


def test_correlations_skip_unfinished_trials() -> None:
    study = dropout_study()
    params = {"shuffle": 0.0, "dropout": 0.5, "lr": 2.0, "optimizer": SGD}
    bad = make_study(
        [(params, None)] * 2, states={0: TrialState.FAIL, 1: TrialState.PRUNED}
    ).get_trials()
    study.add_trials(bad)
    assert by_key(correlation.correlations(study))["sgd", "dropout"].n == 20


def test_correlations_of_an_empty_study() -> None:
    assert correlation.correlations(optuna.create_study()) == []


def test_min_trials_must_allow_a_rank_correlation() -> None:
    with pytest.raises(ConfigError):
        correlation.correlations(dropout_study(), min_trials=2)


# --- importance ------------------------------------------------------------------------------


def lr_study(n: int = 60, seed: int = 1) -> optuna.Study:
    """Only lr matters: the accuracy peaks at lr gene 2.5 (lr ≈ 3e-3)."""
    rng = np.random.default_rng(seed)
    trials: list[tuple[Mapping[str, float], float | None]] = []
    for _ in range(n):
        params = {
            "lr": float(rng.uniform(1, 5)),
            "dropout": float(rng.uniform(0, 0.5)),
            "input_noise": float(rng.uniform(0, 1)),
            "optimizer": float(rng.uniform(0, 3)),
        }
        trials.append((params, 0.9 - 0.1 * (params["lr"] - 2.5) ** 2))
    return make_study(trials)


@pytest.mark.parametrize("evaluator", ["ped-anova", "fanova"])
def test_importance_ranks_the_only_relevant_gene_first(evaluator: str) -> None:
    result = correlation.importance(lr_study(), evaluator=evaluator)  # type: ignore[arg-type]
    assert next(iter(result)) == "lr"
    assert result["lr"] == max(result.values()) and result["lr"] > 0.5
    assert set(result) == {"lr", "dropout", "input_noise", "optimizer"}
    assert sum(result.values()) == pytest.approx(1.0)


def test_importance_needs_ten_completed_trials() -> None:
    study = lr_study(n=9)
    params = {"lr": 2.0, "dropout": 0.1, "input_noise": 0.1, "optimizer": 1.0}
    study.add_trials(make_study([(params, None)], states={0: TrialState.FAIL}).get_trials())
    with pytest.raises(ConfigError, match="at least 10 completed trials") as info:
        correlation.importance(study)
    assert info.value.value == 9


def test_importance_rejects_an_unknown_evaluator() -> None:
    with pytest.raises(UnknownNameError):
        correlation.importance(lr_study(), evaluator="shap")  # type: ignore[arg-type]


# --- tables ----------------------------------------------------------------------------------


def test_markdown_escapes_pipes_and_shows_none() -> None:
    rows = [{"name": "a|b", "rho": None, "p": 0.123456, "n": 3, "nan": math.nan}]
    text = tables.to_markdown(rows)
    header, rule, line = text.strip().split("\n")
    assert header == "| name | rho | p | n | nan |"
    assert rule == "|---|---|---|---|---|"
    assert line == "| a\\|b | — | 0.1235 | 3 | — |"
    # Only the separators are unescaped pipes: the cell did not split the row.
    assert line.replace("\\|", "").count("|") == 6


def test_markdown_columns_and_format() -> None:
    rows: list[dict[str, object]] = [{"a": 1.0, "b": "x\ny"}, {"b": "z"}]
    text = tables.to_markdown(rows, ["b", "a"], floatfmt="{:.1f}")
    assert text.splitlines()[2:] == ["| x y | 1.0 |", "| z | — |"]
    assert tables.to_markdown([]) == ""


def test_csv_round_trips(tmp_path: Path) -> None:
    rows = [
        {"gene": "lr", "rho": 0.1234567890123, "p_value": None, "n": 7, "note": ""},
        {"gene": "a,b|c", "rho": -1.0, "p_value": 1e-12, "n": 0, "note": 'say "hi"\nthere'},
    ]
    path = tmp_path / "out" / "table.csv"
    tables.to_csv(rows, path)
    with path.open(newline="") as handle:
        back = list(csv.DictReader(handle))
    assert [list(r) for r in back] == [["gene", "rho", "p_value", "n", "note"]] * 2
    for original, read in zip(rows, back, strict=True):
        assert read["gene"] == original["gene"]
        assert float(read["rho"]) == original["rho"]
        assert read["p_value"] == ("" if original["p_value"] is None else read["p_value"])
        assert int(read["n"]) == original["n"]
        assert read["note"] == original["note"]
    assert float(back[1]["p_value"]) == 1e-12
    assert [p.name for p in path.parent.iterdir()] == ["table.csv"]  # no temporary left


def test_correlation_table_and_matrix() -> None:
    rows = correlation.correlations(dropout_study())
    table = tables.correlation_table(rows)
    assert list(table[0]) == ["group", "gene", "rho", "p_value", "q_value", "n", "note"]
    assert len(table) == len(rows)
    groups, genes, values = tables.correlation_matrix(rows)
    assert groups == ["sgd", "momentum", "adam", "all"]
    assert genes == ["shuffle", "dropout", "lr"]
    assert values.shape == (3, 4)
    assert np.isnan(values[0]).all()  # shuffle is constant
    assert np.isnan(values[1, 1])  # momentum has too few trials
    assert values[1, 0] > 0.8 and values[1, 2] < -0.8
    assert "constant" in tables.to_markdown(table)


def test_importance_table() -> None:
    table = tables.importance_table(
        {"ped-anova": {"lr": 0.7, "dropout": 0.3}, "fanova": {"lr": 0.9, "batch": 0.1}}
    )
    assert [list(r) for r in table] == [["gene", "ped_anova", "fanova"]] * 3
    assert [r["gene"] for r in table] == ["lr", "dropout", "batch"]
    assert table[1]["fanova"] is None and table[2]["ped_anova"] is None
    assert table[0]["ped_anova"] == 0.7 and table[0]["fanova"] == 0.9


EVALUATION = {
    "study": "s",
    "best_trial": 4,
    "best_validation_accuracy": 0.9,
    "epochs": 3,
    "repeats": 2,
    "baseline": {"test_accuracy": [0.78, 0.8], "mean": 0.79, "std": 0.014, "error": 0.21},
    "best": {"test_accuracy": [0.89, 0.9], "mean": 0.895, "std": 0.007, "error": 0.105},
    "error_reduction": 0.5,
}


def test_error_reduction_table() -> None:
    table = tables.error_reduction_table(EVALUATION)
    assert table == [
        {
            "configuration": "baseline",
            "mean": 0.79,
            "std": 0.014,
            "error": 0.21,
            "n": 2,
            "diverged": 0,
            "error_reduction": None,
        },
        {
            "configuration": "best",
            "mean": 0.895,
            "std": 0.007,
            "error": 0.105,
            "n": 2,
            "diverged": 0,
            "error_reduction": 0.5,
        },
    ]
    assert "| best | 0.8950 | 0.0070 | 0.1050 | 2 | 0 | 0.5000 |" in tables.to_markdown(table)


def test_error_reduction_table_of_a_diverged_best() -> None:
    """Every run of the best configuration diverged: no numbers, never NaN, and the count."""
    gone = [{"seed": 4, "epoch": 1, "message": "m"}, {"seed": 5, "epoch": 2, "message": "m"}]
    evaluation = {
        **EVALUATION,
        "best": {"test_accuracy": [], "mean": None, "std": None, "error": None, "runs": 2,
                 "diverged": gone},
        "error_reduction": None,
    }  # fmt: skip
    table = tables.error_reduction_table(evaluation)
    assert table[1] == {
        "configuration": "best",
        "mean": None,
        "std": None,
        "error": None,
        "n": 0,
        "diverged": 2,
        "error_reduction": None,
    }
    assert "| best | — | — | — | 0 | 2 | — |" in tables.to_markdown(table)


def test_error_reduction_table_rejects_other_json() -> None:
    with pytest.raises(ConfigError, match="evaluation.baseline"):
        tables.error_reduction_table({"best": EVALUATION["best"]})


# --- figures ---------------------------------------------------------------------------------


def rendered(figure: object) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")  # type: ignore[attr-defined]
    return buffer.getvalue()


def test_heatmap_titles_and_scale() -> None:
    figure = tables.plot_correlation_heatmap(correlation.correlations(dropout_study()))
    ax, bar = figure.axes
    assert ax.get_title() == "Spearman correlation with validation accuracy, by optimizer"
    assert bar.get_ylabel() == "Spearman ρ"
    mesh = ax.collections[0]
    assert mesh.get_clim() == (-1.0, 1.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sgd", "momentum", "adam", "all"]
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 24 and "—" in texts  # rho and n in each of 3 × 4 cells
    assert texts.count("n=20") == 6 and "n=43" in texts and "n=3" in texts
    assert "Benjamini–Hochberg" in ax.get_xlabel()
    assert rendered(figure).startswith(b"\x89PNG")


def test_fdr_is_benjamini_hochberg_over_every_row_with_a_p_value() -> None:
    ps = [0.001, 0.02, None, 0.03, 0.04, 0.5]
    rows = [CorrelationRow("all", f"g{i}", 0.1 if p else None, p, 10) for i, p in enumerate(ps)]
    adjusted = correlation.fdr(rows)
    tested = [p for p in ps if p is not None]
    expected = list(stats.false_discovery_control(tested, method="bh"))
    assert [r.q_value for r in adjusted if r.p_value is not None] == pytest.approx(expected)
    assert adjusted[2].q_value is None
    assert [r.q_value for r in adjusted][:2] == pytest.approx([0.005, 0.05])
    assert correlation.fdr([]) == []


def test_correlations_carry_q_values() -> None:
    rows = correlation.correlations(dropout_study())
    tested = [r for r in rows if r.p_value is not None]
    assert tested and all(r.q_value is not None and r.q_value >= r.p_value for r in tested)
    assert all(r.q_value is None for r in rows if r.p_value is None)


def test_heatmap_marks_only_cells_significant_after_the_correction() -> None:
    """Four cells at p = 0.04 are each significant alone, but not after Benjamini–Hochberg
    over 10 cells; the cell at p = 0.001 stays significant."""
    ps = [0.001, 0.04, 0.04, 0.04, 0.04, 0.5, 0.6, 0.7, 0.8, 0.9]
    rows = [CorrelationRow("all", f"g{i}", 0.5, p, 12) for i, p in enumerate(ps)]
    figure = tables.plot_correlation_heatmap(rows)
    ax = figure.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("0.50*") == 1 and texts.count("0.50") == 9
    assert texts.count("n=12") == 10
    assert len(ax.patches) == 1  # one framed cell
    assert "over 10 cells" in ax.get_xlabel()
    caption = tables.heatmap_caption(rows)
    assert "Benjamini–Hochberg correction over all 10 cells" in caption


def test_importance_figure() -> None:
    figure = tables.plot_importance(
        {"ped-anova": {"lr": 0.7, "dropout": 0.3}, "fanova": {"lr": 0.9, "dropout": 0.1}}
    )
    (ax,) = figure.axes
    assert ax.get_xlabel() == "importance (normalised)"
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["ped-anova", "fanova"]
    colours = {tuple(p.get_facecolor()) for p in ax.patches}
    assert len(ax.patches) == 4 and len(colours) == 2
    assert rendered(figure).startswith(b"\x89PNG")


def trial(
    state: TrialState,
    value: float | None,
    *,
    generation: int | None = None,
    intermediate: dict[int, float] | None = None,
    attrs: dict[str, object] | None = None,
) -> optuna.trial.FrozenTrial:
    """A finished trial over ``lr`` with the given state, value, PSO generation, reported
    values and system attributes."""
    system = dict(attrs or {})
    if generation is not None:
        system[tables.GENERATION] = generation
    return create_trial(
        state=state,
        params={"lr": 2.0},
        distributions={"lr": DISTRIBUTIONS["lr"]},
        value=value,
        intermediate_values=intermediate,
        system_attrs=system,
    )


def test_history_marks_pruned_and_failed_trials_and_skips_unused_ones() -> None:
    study = optuna.create_study(direction="maximize")
    done = TrialState.COMPLETE
    study.add_trials(
        [
            trial(done, 0.3),
            trial(done, 0.5),
            trial(TrialState.FAIL, None),
            trial(done, 0.4),
            trial(TrialState.PRUNED, None, intermediate={0: 0.35}),
            trial(done, 0.7),
            trial(done, 0.9),
            trial(done, 0.99, attrs={tables.UNUSED: "budget used up"}),
        ]
    )
    figure = tables.plot_history(study)
    ax = figure.axes[0]
    assert ax.get_xlabel() == "trial" and ax.get_ylabel() == "validation accuracy"
    completed, pruned, failed = ax.collections
    assert completed.get_offsets().tolist() == [[0, 0.3], [1, 0.5], [3, 0.4], [5, 0.7], [6, 0.9]]
    (best,) = ax.get_lines()
    assert np.asarray(best.get_ydata()).tolist() == [0.3, 0.5, 0.5, 0.7, 0.9]
    assert pruned.get_offsets().tolist() == [[4, 0.35]]  # at its last reported value
    assert np.asarray(failed.get_offsets())[:, 0].tolist() == [2]
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert labels == ["completed (5)", "pruned (1; last value)", "failed (1; no value)",
                      "best so far"]  # fmt: skip
    assert len(figure.axes) == 1  # no generations: one colour, no colour bar
    assert len({tuple(c) for c in completed.get_facecolors()}) == 1
    assert rendered(figure).startswith(b"\x89PNG")


def test_history_colours_trials_by_generation_with_integer_ticks() -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trials([trial(TrialState.COMPLETE, 0.1 * i, generation=i // 3) for i in range(9)])
    figure = tables.plot_history(study)
    ax, bar = figure.axes
    assert bar.get_ylabel() == "PSO generation"
    colours = [tuple(c) for c in ax.collections[0].get_facecolors()]
    assert len(set(colours)) == 3 and colours[0] == colours[2] != colours[3]
    rendered(figure)
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert all(float(t).is_integer() for t in bar.get_yticks())


def test_history_attributes_match_the_search() -> None:
    from dicelab.tune._pso.sampler import GENERATION
    from dicelab.tune.search import UNUSED

    assert (tables.GENERATION, tables.UNUSED) == (GENERATION, UNUSED)


def test_ablation_effects_have_welch_intervals() -> None:
    rows = [
        {"name": "best", "kind": "reference", "test_accuracy": [0.97, 0.98, 0.99]},
        {"name": "without dropout", "kind": "component", "test_accuracy": [0.95, 0.96, 0.94]},
        {"name": "baseline", "kind": "reference", "test_accuracy": [0.9]},
    ]
    effects = tables.ablation_effects(rows)
    assert [e["name"] for e in effects] == ["without dropout", "baseline"]
    first = effects[0]
    welch = stats.ttest_ind([0.95, 0.96, 0.94], [0.97, 0.98, 0.99], equal_var=False)
    assert first["delta"] == pytest.approx(-0.03) and first["p"] == pytest.approx(welch.pvalue)
    interval = welch.confidence_interval(0.95)
    assert (first["low"], first["high"]) == pytest.approx((interval.low, interval.high))
    assert effects[1]["low"] is None and effects[1]["p"] is None  # one seed: no interval
    assert tables.ablation_effects(rows[1:]) == []


def test_ablation_effects_leave_out_variants_whose_every_run_diverged() -> None:
    rows = [
        {"name": "best", "kind": "reference", "test_accuracy": [0.97, 0.98, 0.99]},
        {"name": "without dropout", "kind": "component", "test_accuracy": []},
        {"name": "baseline", "kind": "reference", "test_accuracy": [0.9, 0.91]},
    ]
    assert [e["name"] for e in tables.ablation_effects(rows)] == ["baseline"]
    gone = [{**rows[0], "test_accuracy": []}, *rows[1:]]
    assert tables.ablation_effects(gone) == []  # no reference to measure a change from


# --- scale -----------------------------------------------------------------------------------


def test_ten_thousand_trials_are_analysed_quickly(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    genes = list(paper_space.GENES)
    study = optuna.create_study(direction="maximize")
    build = time.perf_counter()
    frozen = []
    for _ in range(10_000):
        params = {
            name: float(rng.uniform(g.low, g.high))
            for name, g in zip(DISTRIBUTIONS, genes, strict=True)
        }
        value = 0.5 + 0.2 * params["dropout"] - 0.01 * params["lr"] + rng.normal(0, 0.01)
        frozen.append(create_trial(params=params, distributions=DISTRIBUTIONS, value=float(value)))
    study.add_trials(frozen)
    build = time.perf_counter() - build
    start = time.perf_counter()
    rows = correlation.correlations(study)
    table = tables.correlation_table(rows)
    tables.to_markdown(table)
    tables.to_csv(table, tmp_path / "correlations.csv")
    tables.correlation_matrix(rows)
    tables.to_markdown(tables.error_reduction_table(EVALUATION))
    elapsed = time.perf_counter() - start
    print(f"\n10,000 trials: built in {build:.2f} s, analysed in {elapsed:.2f} s")
    assert len(rows) == 4 * 21
    assert by_key(rows)["all", "dropout"].rho > 0.5  # type: ignore[operator]
    assert elapsed < 60  # generous: the machine is shared
