"""Tables and figures of an analysis: CSV and markdown writers, heat maps, bar charts, history.

Rows are plain mappings (column → value), so one writer serves every analysis: CSV for
further processing (written atomically, a reader never sees half a file), markdown for
reports. The ``*_table`` functions turn analysis results (:mod:`dicelab.analysis.correlation`,
the ``evaluation.json`` of ``dicelab evaluate``) into such rows.

The figures are built on :class:`matplotlib.figure.Figure` directly, without ``pyplot``: no
global figure registry, no GUI backend, so they work in worker processes and on headless
machines; save one with ``figure.savefig(path)``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import optuna
from matplotlib.figure import Figure
from optuna.study import StudyDirection
from optuna.trial import TrialState

from dicelab.analysis.correlation import ALL, CorrelationRow
from dicelab.exceptions import ConfigError

#: What a table shows for a missing value (None or NaN).
MISSING = "—"
HEATMAP_TITLE = "Spearman correlation with validation accuracy, by optimizer"
HEATMAP_COLORBAR = "Spearman ρ"
IMPORTANCE_AXIS = "importance (normalised)"


def _columns(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """Every key of the rows, in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _csv_cell(value: object) -> object:
    """A CSV cell: empty for a missing value, ``repr`` precision for floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float | np.floating):
        return repr(float(value))  # round-trips exactly
    return value


def to_csv(rows: Sequence[Mapping[str, object]], path: str | PathLike[str]) -> None:
    """Write ``rows`` as CSV (header first; columns as first seen; missing cells empty).

    The file is replaced atomically, so a reader sees the old table or the new one.
    """
    from dicelab import _atomic  # imports torch; only needed when writing

    columns = _columns(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _csv_cell(row.get(c)) for c in columns})
    _atomic.write_text(Path(path), buffer.getvalue())


def _markdown_cell(value: object, floatfmt: str) -> str:
    """A markdown cell: missing as "—", floats with ``floatfmt``, text escaped for tables."""
    if value is None:
        return MISSING
    if isinstance(value, float | np.floating):
        return MISSING if math.isnan(value) else floatfmt.format(float(value))
    text = str(value).replace("\r\n", " ").replace("\n", " ")
    return text.replace("|", "\\|")


def to_markdown(
    rows: Sequence[Mapping[str, object]],
    columns: Sequence[str] | None = None,
    *,
    floatfmt: str = "{:.4f}",
) -> str:
    """A markdown pipe table of ``rows`` (every column as first seen, or ``columns``).

    A missing cell, None or NaN shows as "—"; floats are formatted with ``floatfmt``; a ``|``
    in a text cell is escaped and a line break becomes a space, so a cell never breaks the
    table. With no rows and no ``columns`` the table is empty (``""``).
    """
    chosen = list(columns) if columns is not None else _columns(rows)
    if not chosen:
        return ""
    lines = [
        "| " + " | ".join(_markdown_cell(c, floatfmt) for c in chosen) + " |",
        "|" + "---|" * len(chosen),
    ]
    for row in rows:
        cells = (_markdown_cell(row.get(c), floatfmt) for c in chosen)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def correlation_table(rows: Sequence[CorrelationRow]) -> list[dict[str, Any]]:
    """Correlation rows as table rows: group, gene, rho, p_value, n, note."""
    return [
        {
            "group": r.group,
            "gene": r.gene,
            "rho": r.rho,
            "p_value": r.p_value,
            "n": r.n,
            "note": r.note,
        }
        for r in rows
    ]


def _column(evaluator: str) -> str:
    """The table column of an importance evaluator (``"ped-anova"`` → ``"ped_anova"``)."""
    return evaluator.replace("-", "_")


def importance_table(importances: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """Importances by evaluator (``{"ped-anova": {gene: value}, "fanova": ...}``) as rows.

    Columns: gene, ped_anova, fanova (and any other evaluator after them); an evaluator that
    was not run, or did not rate a gene, leaves None. The genes are sorted by their mean
    importance over the evaluators that rated them, most important first.
    """
    columns = dict.fromkeys(["ped_anova", "fanova", *(_column(e) for e in importances)])
    genes: dict[str, list[float]] = {}
    for values in importances.values():
        for gene, value in values.items():
            genes.setdefault(gene, []).append(float(value))
    order = sorted(genes, key=lambda g: (-sum(genes[g]) / len(genes[g]), g))
    rows: list[dict[str, Any]] = []
    for gene in order:
        row: dict[str, Any] = {"gene": gene, **dict.fromkeys(columns)}
        for evaluator, values in importances.items():
            if gene in values:
                row[_column(evaluator)] = float(values[gene])
        rows.append(row)
    return rows


def error_reduction_table(evaluation: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The baseline and best rows of an ``evaluation.json`` summary, with the error reduction.

    Columns: configuration, mean, std, error (of the test accuracy over the seeds), n (the
    seeds), error_reduction (``1 − err_best/err_baseline``; on the best row only, None when
    the baseline makes no errors).

    Raises:
        ConfigError: the mapping is not an ``evaluation.json`` summary.
    """
    rows: list[dict[str, Any]] = []
    for name in ("baseline", "best"):
        entry = evaluation.get(name)
        if not isinstance(entry, Mapping) or not {"mean", "std", "error"} <= set(entry):
            raise ConfigError(
                f"evaluation.{name}",
                entry,
                "an evaluation.json summary has mean, std and error for baseline and best",
            )
        accuracies = entry.get("test_accuracy")
        n = len(accuracies) if isinstance(accuracies, Sequence) else evaluation.get("repeats")
        reduction = evaluation.get("error_reduction") if name == "best" else None
        rows.append(
            {
                "configuration": name,
                "mean": float(entry["mean"]),
                "std": float(entry["std"]),
                "error": float(entry["error"]),
                "n": n,
                "error_reduction": None if reduction is None else float(reduction),
            }
        )
    return rows


def correlation_matrix(
    rows: Sequence[CorrelationRow],
) -> tuple[list[str], list[str], np.ndarray]:
    """The correlations as a matrix for a heat map: ``(groups, genes, values)``.

    ``values[i, j]`` is rho of ``genes[i]`` in ``groups[j]`` (shape genes × groups), NaN where
    rho is None or the row is missing. Groups and genes keep their order of first appearance,
    except that ``"all"`` comes last, after the optimizers.
    """
    groups = list(dict.fromkeys(r.group for r in rows))
    if ALL in groups:
        groups = [g for g in groups if g != ALL] + [ALL]
    genes = list(dict.fromkeys(r.gene for r in rows))
    values = np.full((len(genes), len(groups)), np.nan)
    g_index = {g: j for j, g in enumerate(groups)}
    n_index = {g: i for i, g in enumerate(genes)}
    for r in rows:
        if r.rho is not None:
            values[n_index[r.gene], g_index[r.group]] = r.rho
    return groups, genes, values


def plot_correlation_heatmap(rows: Sequence[CorrelationRow]) -> Figure:
    """A heat map of rho, genes × optimizer groups, each cell annotated ("—" when undefined).

    The colormap diverges around 0 over [−1, 1]: red for genes that go with a higher
    validation accuracy, blue for a lower one, grey where rho is undefined.
    """
    groups, genes, values = correlation_matrix(rows)
    figure = Figure(
        figsize=(1.6 + 1.1 * max(len(groups), 1), 1.2 + 0.38 * max(len(genes), 1)),
        layout="constrained",
    )
    ax = figure.subplots()
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-1.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_yticks(range(len(genes)), genes)
    ax.set_xlabel("optimizer")
    ax.set_ylabel("gene")
    for i in range(len(genes)):
        for j in range(len(groups)):
            rho = values[i, j]
            text = MISSING if math.isnan(rho) else f"{rho:.2f}"
            color = "white" if not math.isnan(rho) and abs(rho) > 0.6 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    ax.set_title(HEATMAP_TITLE)
    figure.colorbar(image, ax=ax, label=HEATMAP_COLORBAR)
    return figure


def plot_importance(importances: Mapping[str, Mapping[str, float]]) -> Figure:
    """Horizontal bars of each gene's importance, one colour (and bar) per evaluator.

    The most important gene (by mean importance, as :func:`importance_table`) is on top.
    """
    table = importance_table(importances)
    evaluators = list(importances)
    figure = Figure(figsize=(7.0, 1.2 + 0.32 * max(len(table), 1)), layout="constrained")
    ax = figure.subplots()
    height = 0.8 / max(len(evaluators), 1)
    positions = np.arange(len(table))[::-1]  # first row on top
    colours = matplotlib.colormaps["tab10"]
    for k, evaluator in enumerate(evaluators):
        widths = [row[_column(evaluator)] or 0.0 for row in table]
        offset = (len(evaluators) - 1) / 2 - k
        ax.barh(
            positions + offset * height,
            widths,
            height=height,
            color=colours(k % 10),
            label=evaluator,
        )
    ax.set_yticks(positions, [row["gene"] for row in table])
    ax.set_xlabel(IMPORTANCE_AXIS)
    ax.set_title("Hyperparameter importance")
    if evaluators:
        ax.legend(title="evaluator", loc="lower right")
    return figure


def plot_history(study: optuna.Study) -> Figure:
    """Each completed trial's value by trial number, with the running best as a line.

    Failed, pruned and running trials are skipped. The running best follows the study's
    direction (the highest validation accuracy for dicelab's maximising searches).
    """
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done = [t for t in done if t.value is not None and math.isfinite(t.value)]
    numbers = np.array([t.number for t in done], dtype=float)
    values = np.array([t.value for t in done], dtype=float)
    order = np.argsort(numbers, kind="stable")
    numbers, values = numbers[order], values[order]
    running = np.minimum if study.direction == StudyDirection.MINIMIZE else np.maximum
    best = running.accumulate(values) if values.size else values
    figure = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = figure.subplots()
    ax.plot(numbers, values, "o", markersize=3, alpha=0.5, label="trial")
    ax.plot(numbers, best, "-", color="C3", drawstyle="steps-post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"Search history of {study.study_name}")
    ax.legend(loc="lower right")
    return figure
