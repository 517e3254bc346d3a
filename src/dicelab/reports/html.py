"""``dicelab report``: one self-contained HTML file from what a folder holds.

The report reads the results that earlier commands left in a folder and never trains:

- the search study: its history, correlations by optimizer, and importance;
- ``evaluation.json``: the best configuration against the baseline, with the error reduction;
- ``ablation.json``: the ablations;
- ``comparison.json``: an optimizer comparison (``reproduce paper3``);
- ``landscape/*.json`` and ``hessian/*.json``: loss landscapes and Hessian spectra.

A section appears only when its input exists. Figures are PNG images embedded as base64
``data:`` URIs and the style is inline, so the file opens anywhere without a network. Every
piece of text that comes from a user (study names, configuration values, parameter names) is
HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from dicelab import _atomic
from dicelab.exceptions import ConfigError
from dicelab.version import __version__

REPORT = "report.html"

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}.note{color:#555;font-size:.92em}
.headline{font-size:1.3em;font-weight:600}
"""

# Lets a test (or a reader's console) check that every figure decoded: after load, the body
# carries the number of images and of images that loaded.
_SCRIPT = """
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  document.body.setAttribute('data-images', images.length);
  document.body.setAttribute('data-loaded',
    images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length);
});
"""


def e(value: object) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(value), quote=True)


def figure_html(fig: Figure, caption: str) -> str:
    """A figure as an embedded PNG with its caption."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{e(caption)}</figcaption></figure>"
    )


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "—" if value != value else f"{value:.4g}"
    return e(value)


def table_html(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None) -> str:
    """A list of rows as an HTML table (every cell escaped)."""
    if not rows:
        return '<p class="note">No rows.</p>'
    columns = list(columns or rows[0].keys())
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _search_sections(folder: Path, study_name: str, storage: str | None) -> list[str]:
    """History, correlations and importance of the folder's study (if it has one)."""
    import optuna

    from dicelab.analysis.analyze import ANALYSIS, SUMMARY
    from dicelab.analysis.correlation import CorrelationRow, correlations, importances
    from dicelab.analysis.tables import (
        correlation_table,
        importance_table,
        plot_correlation_heatmap,
        plot_history,
        plot_importance,
    )
    from dicelab.tune.search import storage_spec
    from dicelab.tune.storage import open_storage

    spec = storage_spec(folder, storage)
    if storage is None and not Path(spec).is_file():
        return []
    study = optuna.load_study(study_name=study_name, storage=open_storage(spec))
    done = [t for t in study.trials if t.value is not None]
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    parts = [
        "<h2>Search</h2>",
        f"<p>Study <code>{e(study_name)}</code>: {len(study.trials)} trials ("
        + ", ".join(f"{e(n)} {k}" for k, n in sorted(states.items()))
        + ").</p>",
    ]
    if done:
        best = max(done, key=lambda t: (t.value, -t.number))
        parts.append(figure_html(plot_history(study), "Validation accuracy of every trial"))
        parts.append(
            f"<p>Best trial {best.number}: validation accuracy {best.value:.4f}.</p>"
            + table_html([{"gene": k, "value": v} for k, v in sorted(best.params.items())])
        )
    saved = _read(folder / ANALYSIS / SUMMARY)
    if saved is not None:
        rows = [CorrelationRow(**r) for r in saved["correlations"]]
        found = saved.get("importance") or {}
    else:
        rows = correlations(study) if done else []
        found = importances(study) if len(done) >= 10 else {}
    if rows:
        parts += [
            "<h2>Correlation with validation accuracy, by optimizer</h2>",
            '<p class="note">Spearman rank correlation of each technique\'s strength with the '
            "validation accuracy over the completed trials. PSO concentrates its trials near "
            "good regions, so these describe the sampled trials; they are not causal.</p>",
            figure_html(plot_correlation_heatmap(rows), "Spearman ρ by gene and optimizer"),
            table_html(correlation_table(rows)),
        ]
    if found:
        parts += [
            "<h2>Importance</h2>",
            figure_html(plot_importance(found), "Hyperparameter importance"),
            table_html(importance_table(found)),
        ]
    return parts


def _evaluation_section(folder: Path) -> list[str]:
    from dicelab.analysis.tables import error_reduction_table

    evaluation = _read(folder / "evaluation.json")
    if evaluation is None:
        return []
    reduction = evaluation.get("error_reduction")
    shown = "n/a" if reduction is None else f"{reduction:.1%}"
    return [
        "<h2>Best configuration against the baseline</h2>",
        f'<p class="headline">Relative test-error reduction: {e(shown)}</p>',
        f"<p>Trained on the full training set for {e(evaluation['epochs'])} epochs, "
        f"{e(evaluation['repeats'])} seeds each.</p>",
        table_html(error_reduction_table(evaluation)),
    ]


def _ablation_section(folder: Path) -> list[str]:
    ablation = _read(folder / "ablation.json")
    if ablation is None:
        return []
    rows = ablation["rows"]
    fig = Figure(figsize=(7, 0.4 * len(rows) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    names = [r["name"] for r in rows]
    means = [r["mean"] for r in rows]
    errors = [r["std"] for r in rows]
    ax.barh(names, means, xerr=errors, color="#4c72b0")
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (mean ± std over seeds)")
    ax.set_title("Ablations of the best configuration")
    low = min(m - s for m, s in zip(means, errors, strict=True))
    ax.set_xlim(max(0.0, low - 0.02), min(1.0, max(means) + 0.02))
    table = [
        {
            "variant": r["name"],
            "genes reset": ", ".join(r["reset"]) if r["name"] != "baseline" else "all",
            "mean": r["mean"],
            "std": r["std"],
            "Δ": r["delta"],
            "s.e.": r["delta_se"],
            "p": r["p_value"],
        }
        for r in rows
    ]
    return [
        "<h2>Ablations</h2>",
        f"<p>{e(ablation['epochs'])} epochs, {e(ablation['repeats'])} seeds per variant; Δ is "
        "the change from the best configuration, p is Welch's t-test.</p>",
        figure_html(fig, "Test accuracy of each ablation"),
        table_html(table),
        *(
            [
                '<p class="note">Not ablated, because their best value decodes to the '
                f"baseline: {e(', '.join(ablation['inactive']))}.</p>"
            ]
            if ablation.get("inactive")
            else []
        ),
    ]


def _comparison_section(folder: Path) -> list[str]:
    comparison = _read(folder / "comparison.json")
    if comparison is None:
        return []
    rows = comparison["rows"]
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(
        [r["method"] for r in rows],
        [r["mean"] for r in rows],
        yerr=[r["std"] for r in rows],
        color="#55a868",
    )
    ax.set_ylabel("test accuracy (mean ± std)")
    ax.set_title("Optimizers compared")
    lows = [r["mean"] - r["std"] for r in rows]
    ax.set_ylim(max(0.0, min(lows) - 0.02), 1.0)
    return [
        "<h2>Optimizer comparison</h2>",
        f"<p>{e(comparison.get('description', ''))}</p>",
        figure_html(fig, "Test accuracy by optimizer"),
        table_html(rows, ["method", "mean", "std", "test_accuracy", "updates"]),
    ]


def _landscape_section(folder: Path) -> list[str]:
    files = sorted((folder / "landscape").glob("*.json"))
    if not files:
        return []
    from dicelab.analysis.landscape import Landscape2D, from_dict, plot_1d, plot_2d

    parts = ["<h2>Loss landscapes</h2>"]
    for path in files:
        landscape = from_dict(json.loads(path.read_text()))
        fig = plot_2d(landscape) if isinstance(landscape, Landscape2D) else plot_1d(landscape)
        parts.append(figure_html(fig, f"{path.stem}: loss around the weights"))
    return parts


def _hessian_section(folder: Path) -> list[str]:
    files = sorted((folder / "hessian").glob("*.json"))
    if not files:
        return []
    rows = []
    densities = []
    for path in files:
        report = json.loads(path.read_text())
        trace = report.get("trace") or {}
        rows.append(
            {
                "model": path.stem,
                "top eigenvalues": ", ".join(f"{v:.4g}" for v in report["eigenvalues"]),
                "trace": trace.get("mean"),
                "trace s.e.": trace.get("stderr"),
            }
        )
        if report.get("density"):
            densities.append((path.stem, report["density"]))
    parts = ["<h2>Hessian spectra</h2>", table_html(rows)]
    if densities:
        fig = Figure(figsize=(7, 3.5), layout="constrained")
        ax = fig.add_subplot()
        for name, density in densities:
            ax.semilogy(density["grid"], [max(d, 1e-12) for d in density["density"]], label=name)
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("density (log scale)")
        ax.set_title("Hessian eigenvalue density (stochastic Lanczos quadrature)")
        ax.legend()
        parts.append(figure_html(fig, "Hessian eigenvalue density"))
    return parts


def build_report(
    folder: str | Path,
    *,
    study: str = "search",
    storage: str | None = None,
    title: str | None = None,
) -> Path:
    """Write ``<folder>/report.html`` from the results in ``folder``; its path."""
    folder = Path(folder)
    sections = [
        *_evaluation_section(folder),
        *_search_sections(folder, study, storage),
        *_ablation_section(folder),
        *_comparison_section(folder),
        *_landscape_section(folder),
        *_hessian_section(folder),
    ]
    if not sections:
        raise ConfigError(
            "--out",
            str(folder),
            "holds no results to report (no search, evaluation, ablation, comparison, "
            "landscape or Hessian results); run dicelab search or dicelab reproduce first",
        )
    heading = title or f"dicelab report: {folder.name}"
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(heading)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{e(heading)}</h1>"
        + "\n".join(sections)
        + f'<p class="note">Made by dicelab {e(__version__)}.</p>'
        f"<script>{_SCRIPT}</script></body></html>"
    )
    path = folder / REPORT
    _atomic.write_text(path, page)
    return path
