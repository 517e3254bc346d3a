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
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from dicelab.analysis.correlation import ALL, FDR_LEVEL, CorrelationRow, fdr
from dicelab.exceptions import ConfigError

#: What a table shows for a missing value (None or NaN).
MISSING = "—"
HEATMAP_TITLE = "Spearman correlation with validation accuracy, by optimizer"
HEATMAP_COLORBAR = "Spearman ρ"
IMPORTANCE_AXIS = "importance (normalised)"
#: Marks a heat-map cell whose correlation is significant after the FDR correction.
SIGNIFICANT = "*"
#: The trial system attribute holding a PSO trial's generation
#: (:data:`dicelab.tune._pso.sampler.GENERATION`; not imported, to keep torch out).
GENERATION = "pso:generation"
#: The trial system attribute of a trial that evaluated nothing
#: (:data:`dicelab.tune.search.UNUSED`); such trials are left out of the history.
UNUSED = "dicelab:unused"


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
    """Correlation rows as table rows: group, gene, rho, p_value, q_value, n, note.

    ``q_value`` is the Benjamini–Hochberg false-discovery-rate adjusted p-value over all the
    rows given (:func:`dicelab.analysis.correlation.fdr`), recomputed here so that a table of
    rows read back from an older ``analysis.json`` has it too.
    """
    return [
        {
            "group": r.group,
            "gene": r.gene,
            "rho": r.rho,
            "p_value": r.p_value,
            "q_value": r.q_value,
            "n": r.n,
            "note": r.note,
        }
        for r in fdr(rows)
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

    Columns: configuration, mean, std, error (of the test accuracy over the seeds that
    completed; None when none did), n (those seeds), diverged (the runs that diverged, left
    out of the other columns), error_reduction (``1 − err_best/err_baseline``; on the best
    row only, None when the baseline makes no errors or a side has no completed run).

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
                "mean": _number(entry["mean"]),
                "std": _number(entry["std"]),
                "error": _number(entry["error"]),
                "n": n,
                "diverged": len(entry.get("diverged") or []),
                "error_reduction": _number(reduction),
            }
        )
    return rows


def _number(value: Any) -> float | None:
    """A number of a summary as a float; None stays None (no run to average)."""
    return None if value is None else float(value)


def correlation_cells(
    rows: Sequence[CorrelationRow],
) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """The correlations as matrices for a heat map: ``(groups, genes, rho, n, q)``.

    Each matrix has shape genes × groups. ``rho[i, j]`` is rho of ``genes[i]`` in
    ``groups[j]`` (NaN where rho is None or the row is missing), ``n[i, j]`` the trials it is
    computed over (0 for a missing row), and ``q[i, j]`` its Benjamini–Hochberg q-value over
    all the rows given (NaN where there is no p-value). Groups and genes keep their order of
    first appearance, except that ``"all"`` comes last, after the optimizers.
    """
    rows = fdr(rows)
    groups = list(dict.fromkeys(r.group for r in rows))
    if ALL in groups:
        groups = [g for g in groups if g != ALL] + [ALL]
    genes = list(dict.fromkeys(r.gene for r in rows))
    rho = np.full((len(genes), len(groups)), np.nan)
    n = np.zeros((len(genes), len(groups)), dtype=int)
    q = np.full((len(genes), len(groups)), np.nan)
    g_index = {g: j for j, g in enumerate(groups)}
    n_index = {g: i for i, g in enumerate(genes)}
    for r in rows:
        cell = n_index[r.gene], g_index[r.group]
        n[cell] = r.n
        if r.rho is not None:
            rho[cell] = r.rho
        if r.q_value is not None:
            q[cell] = r.q_value
    return groups, genes, rho, n, q


def correlation_matrix(
    rows: Sequence[CorrelationRow],
) -> tuple[list[str], list[str], np.ndarray]:
    """The correlations as a matrix for a heat map: ``(groups, genes, values)``.

    ``values[i, j]`` is rho of ``genes[i]`` in ``groups[j]`` (shape genes × groups), NaN where
    rho is None or the row is missing; the order is :func:`correlation_cells`'.
    """
    groups, genes, rho, _, _ = correlation_cells(rows)
    return groups, genes, rho


def heatmap_caption(rows: Sequence[CorrelationRow], level: float = FDR_LEVEL) -> str:
    """What the heat map shows, in words: rho, n per cell, and which correction marks cells."""
    tested = sum(1 for r in rows if r.p_value is not None)
    return (
        f"Spearman ρ of each gene's strength with the validation accuracy, by optimizer; n is "
        f"the number of trials in each cell. {SIGNIFICANT} and a black frame mark the cells "
        f"significant at a false discovery rate of {level:.0%} after the Benjamini–Hochberg "
        f"correction over all {tested} cells with a p-value (q < {level:g}); "
        f"{MISSING} where ρ is undefined."
    )


def plot_correlation_heatmap(
    rows: Sequence[CorrelationRow], *, level: float = FDR_LEVEL
) -> Figure:
    """A heat map of rho, genes × optimizer groups; each cell shows rho and its n.

    The colormap diverges around 0 over [−1, 1]: red for genes that go with a higher
    validation accuracy, blue for a lower one, grey where rho is undefined ("—"). A cell whose
    Benjamini–Hochberg q-value over all the cells is below ``level`` is significant after the
    false-discovery-rate correction: its rho gets a star and the cell a black frame. Without
    the correction, a 4 × 21 table at p < 0.05 would show about 4 "significant" cells by
    chance alone.
    """
    groups, genes, values, counts, q = correlation_cells(rows)
    figure = Figure(
        figsize=(1.8 + 1.15 * max(len(groups), 1), 1.6 + 0.5 * max(len(genes), 1)),
        layout="constrained",
    )
    ax = figure.subplots()
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.85")
    # A mesh of cells, not imshow: it stays vector in SVG (imshow would embed a bitmap).
    image = ax.pcolormesh(
        np.arange(len(groups) + 1) - 0.5,
        np.arange(len(genes) + 1) - 0.5,
        np.ma.masked_invalid(values),
        cmap=cmap,
        vmin=-1.0,
        vmax=1.0,
    )
    ax.invert_yaxis()  # the first gene on top, as in the tables
    ax.set_xticks(range(len(groups)), groups)
    ax.set_yticks(range(len(genes)), genes)
    tested = int(np.sum(~np.isnan(q)))
    ax.set_xlabel(
        f"optimizer\n{SIGNIFICANT} framed: q < {level:g} (Benjamini–Hochberg FDR over "
        f"{tested} cells)"
    )
    ax.set_ylabel("gene")
    for i in range(len(genes)):
        for j in range(len(groups)):
            rho = values[i, j]
            significant = not math.isnan(q[i, j]) and q[i, j] < level
            text = MISSING if math.isnan(rho) else f"{rho:.2f}"
            text += SIGNIFICANT if significant else ""
            color = "white" if not math.isnan(rho) and abs(rho) > 0.6 else "black"
            weight = "bold" if significant else "normal"
            ax.text(j, i - 0.12, text, ha="center", va="center", fontsize=8, color=color,
                    fontweight=weight)  # fmt: skip
            ax.text(j, i + 0.22, f"n={counts[i, j]}", ha="center", va="center", fontsize=6.5,
                    color=color)  # fmt: skip
            if significant:
                ax.add_patch(
                    Rectangle(
                        (j - 0.47, i - 0.47), 0.94, 0.94, fill=False, edgecolor="black", lw=1.5
                    )
                )
    ax.set_title(HEATMAP_TITLE)
    bar = figure.colorbar(image, ax=ax, label=HEATMAP_COLORBAR)
    if bar.solids is not None:
        bar.solids.set_rasterized(False)  # vector in SVG too, however many colours
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


def _generation(trial: FrozenTrial) -> int | None:
    """A trial's PSO generation, or None for a trial the swarm did not tag."""
    value = trial.system_attrs.get(GENERATION)
    return None if value is None else int(value)


def _shown_value(trial: FrozenTrial) -> float | None:
    """A trial's value for the history: its value, else (pruned) its last reported one."""
    if trial.value is not None and math.isfinite(trial.value):
        return float(trial.value)
    if trial.intermediate_values:
        last = trial.intermediate_values[max(trial.intermediate_values)]
        return float(last) if math.isfinite(last) else None
    return None


def plot_history(study: optuna.Study) -> Figure:
    """Every trial's value by trial number, coloured by PSO generation, with the running best.

    - completed trials are filled circles, coloured by their ``pso:generation`` (a colour bar
      with integer ticks names the generations); a study without generations (random, TPE,
      CMA-ES) uses one colour;
    - pruned trials are open triangles at the last validation accuracy they reported;
    - failed trials (diverged, or with no value) are red crosses along the bottom edge;
    - trials that evaluated nothing (``dicelab:unused``) and running ones are left out.

    The running best, over the completed trials, follows the study's direction (the highest
    validation accuracy for dicelab's maximising searches). The x axis has integer ticks.
    """
    trials = [t for t in study.get_trials(deepcopy=False) if UNUSED not in t.system_attrs]
    done = [t for t in trials if t.state == TrialState.COMPLETE and _shown_value(t) is not None]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    pruned_seen = [t for t in pruned if _shown_value(t) is not None]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    failed += [t for t in pruned if _shown_value(t) is None]  # nothing to place them at
    done.sort(key=lambda t: t.number)
    generations = sorted({g for t in trials if (g := _generation(t)) is not None})
    figure = Figure(figsize=(8.0, 4.2), layout="constrained")
    ax = figure.subplots()
    if generations:
        last = generations[-1]
        base = matplotlib.colormaps["viridis"]
        cmap = ListedColormap(base(np.linspace(0.0, 0.9, last + 1)))
        norm = BoundaryNorm(np.arange(last + 2) - 0.5, cmap.N)

        def colours(group: list[FrozenTrial]) -> Any:
            codes = [_generation(t) for t in group]
            return [cmap(norm(c)) if c is not None else (0.6, 0.6, 0.6, 1.0) for c in codes]

    else:

        def colours(group: list[FrozenTrial]) -> Any:
            return ["C0"] * len(group)

    ax.scatter(
        [t.number for t in done],
        np.array([_shown_value(t) for t in done], dtype=float),
        c=colours(done),
        s=22,
        edgecolors="none",
        zorder=3,
    )
    if pruned_seen:
        ax.scatter(
            [t.number for t in pruned_seen],
            np.array([_shown_value(t) for t in pruned_seen], dtype=float),
            marker="v",
            s=30,
            facecolors="none",
            edgecolors=colours(pruned_seen),
            linewidths=1.2,
            zorder=3,
        )
    if failed:
        ax.scatter(
            [t.number for t in failed],
            [0.02] * len(failed),
            marker="x",
            s=30,
            color="#c0392b",
            transform=ax.get_xaxis_transform(),  # x in data, y in axes: along the bottom edge
            clip_on=False,
            zorder=3,
        )
    values = np.array([_shown_value(t) for t in done], dtype=float)
    running = np.minimum if study.direction == StudyDirection.MINIMIZE else np.maximum
    best = running.accumulate(values) if values.size else values
    ax.plot([t.number for t in done], best, "-", color="C3", drawstyle="steps-post")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"Search history of {study.study_name}")
    handles = [
        Line2D([], [], marker="o", ls="", color="0.35", label=f"completed ({len(done)})"),
        Line2D([], [], color="C3", label="best so far"),
    ]
    if pruned:
        handles.insert(1, Line2D([], [], marker="v", ls="", mfc="none", color="0.35",
                                 label=f"pruned ({len(pruned)}; last value)"))  # fmt: skip
    if failed:
        handles.insert(-1, Line2D([], [], marker="x", ls="", color="#c0392b",
                                  label=f"failed ({len(failed)}; no value)"))  # fmt: skip
    # below the axes, so it never hides a trial (failed ones sit on the bottom edge)
    figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8)
    if generations:
        bar = figure.colorbar(
            matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="PSO generation"
        )
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    return figure


def _welch_interval(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> tuple[float, float | None, float | None]:
    """``mean(a) − mean(b)``, the half width of its ``level`` confidence interval (Welch),
    and Welch's t-test p-value; None for both when either side has one value or no spread."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    delta = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return delta, None, None
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se2 = va + vb
    if se2 <= 0:
        return delta, None, None
    df = se2**2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    se = math.sqrt(se2)
    half = float(stats.t.ppf(0.5 + level / 2, df) * se)
    p = float(2 * stats.t.sf(abs(delta) / se, df))  # Welch's t-test, two-sided
    return delta, half, p


def difference(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> dict[str, float | None]:
    """How two sets of per-seed accuracies differ: ``delta`` (mean a − mean b), ``low`` and
    ``high`` (its ``level`` confidence interval by Welch's t), ``p`` (Welch's t-test) and
    ``n_a``, ``n_b``. The interval and p are None when a side has one seed or neither has
    any spread, because then nothing can be said about the noise between seeds."""
    delta, half, p = _welch_interval(a, b, level)
    return {
        "delta": delta,
        "low": None if half is None else delta - half,
        "high": None if half is None else delta + half,
        "p": p,
        "n_a": float(len(a)),
        "n_b": float(len(b)),
    }


#: The axis label of the ablation figure.
ABLATION_AXIS = "change in test accuracy from the best configuration (Δ, 95% CI)"


def ablation_effects(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each ablation's change from the best configuration, with its 95% confidence interval.

    ``rows`` are the rows of ``ablation.json`` (name, kind, test_accuracy, mean...); the row
    named ``"best"`` is the reference. One dict per other row: name, kind, delta, low, high,
    p (see :func:`difference`), over the seeds that completed. Empty without a ``"best"`` row
    with a completed seed; a row none of whose seeds completed (every one diverged) has no
    effect and is left out.
    """
    best = next((r for r in rows if r["name"] == "best"), None)
    if best is None or not best["test_accuracy"]:
        return []
    effects = []
    for row in rows:
        if row is best or not row["test_accuracy"]:
            continue
        found = difference(row["test_accuracy"], best["test_accuracy"])
        effects.append({"name": row["name"], "kind": row.get("kind", ""), **found})
    return effects


def plot_ablation(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Bars of each ablation's change in mean test accuracy from the best configuration.

    Each bar starts at 0, the best configuration (a marked vertical line), so its length is
    the difference itself and the axis always includes 0: nothing is exaggerated by a cut
    axis. The whiskers are 95% confidence intervals of the difference (Welch's t over the
    seeds); a bar without whiskers had one seed or no spread. Components, categories and the
    full baseline have different colours.
    """
    effects = ablation_effects(rows)
    figure = Figure(figsize=(8.0, 0.42 * len(effects) + 1.5), layout="constrained")
    ax = figure.subplots()
    colour = {"component": "C0", "category": "C1", "reference": "0.45"}
    positions = np.arange(len(effects))
    deltas = [e["delta"] for e in effects]
    lower = [0.0 if e["low"] is None else e["delta"] - e["low"] for e in effects]
    upper = [0.0 if e["high"] is None else e["high"] - e["delta"] for e in effects]
    ax.barh(positions, deltas, color=[colour.get(e["kind"], "C0") for e in effects])
    known = [i for i, e in enumerate(effects) if e["low"] is not None]
    if known:
        ax.errorbar(
            [deltas[i] for i in known],
            positions[known],
            xerr=[[lower[i] for i in known], [upper[i] for i in known]],
            fmt="none",
            ecolor="black",
            elinewidth=1.0,
            capsize=3,
        )
    ax.set_yticks(positions, [e["name"] for e in effects])
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", lw=1.2)
    ax.annotate("best configuration (Δ = 0)", (0.0, 1.0), xycoords=("data", "axes fraction"),
                xytext=(4, -4), textcoords="offset points", va="top", fontsize=8)  # fmt: skip
    reach = max([abs(d) + max(lo, hi) for d, lo, hi in zip(deltas, lower, upper, strict=True)]
                or [0.01])  # fmt: skip
    ax.set_xlim(-1.15 * reach, 1.15 * reach)  # symmetric around 0: gains and losses alike
    ax.set_xlabel(ABLATION_AXIS)
    ax.set_title("Ablations of the best configuration")
    handles = [
        Rectangle((0, 0), 1, 1, color=colour[k], label=label)
        for k, label in (("component", "one gene reset"), ("category", "a category reset"),
                         ("reference", "all reset (baseline)"))
        if any(e["kind"] == k for e in effects)
    ]  # fmt: skip
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=8)
    return figure
