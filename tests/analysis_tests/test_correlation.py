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
    assert list(table[0]) == ["group", "gene", "rho", "p_value", "n", "note"]
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
            "error_reduction": None,
        },
        {
            "configuration": "best",
            "mean": 0.895,
            "std": 0.007,
            "error": 0.105,
            "n": 2,
            "error_reduction": 0.5,
        },
    ]
    assert "| best | 0.8950 | 0.0070 | 0.1050 | 2 | 0.5000 |" in tables.to_markdown(table)


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
    image = ax.get_images()[0]
    assert image.get_clim() == (-1.0, 1.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sgd", "momentum", "adam", "all"]
    assert len(ax.texts) == 12 and "—" in {t.get_text() for t in ax.texts}
    assert rendered(figure).startswith(b"\x89PNG")


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


def test_history_figure_skips_unfinished_trials() -> None:
    params = {"lr": 2.0}
    values = [0.3, 0.5, None, 0.4, None, 0.7]
    states = {2: TrialState.FAIL, 4: TrialState.PRUNED}
    study = make_study([(params, v) for v in values], states=states)
    figure = tables.plot_history(study)
    (ax,) = figure.axes
    assert ax.get_xlabel() == "trial" and ax.get_ylabel() == "validation accuracy"
    dots, best = ax.get_lines()
    assert np.asarray(dots.get_xdata()).tolist() == [0, 1, 3, 5]
    assert np.asarray(dots.get_ydata()).tolist() == [0.3, 0.5, 0.4, 0.7]
    assert np.asarray(best.get_ydata()).tolist() == [0.3, 0.5, 0.5, 0.7]
    assert rendered(figure).startswith(b"\x89PNG")


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
