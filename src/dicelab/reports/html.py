"""``dicelab report``: one self-contained HTML file from what a folder holds.

The report reads the results that earlier commands left in a folder and never trains:

- the search study: its definition (dataset, model, sampler, seeds), history, best trial,
  correlations by optimizer, and importance; ``search.json`` for the trial counts;
- ``evaluation.json``: the best configuration against the baseline, with the error reduction;
- ``ablation.json``: the ablations;
- ``comparison.json``: an optimizer comparison (``reproduce paper3``);
- ``landscape/*.json`` and ``hessian/*.json``: loss landscapes and Hessian spectra.

It explains itself: a header says what was searched, how, with which seeds and versions, and
when; a short summary says in plain words when the result is null or negative (the best
configuration is the baseline, or its difference on the test set is not significant); gene
values are shown in real units (lr 1e-3, adam, off), not as gene codes.

A retraining run that diverged (NaN or infinite loss or weights) is left out of every mean,
and each section that shows such means says which seeds diverged.

A section appears only when its input exists. Figures are inline SVG with text kept as text
(sharp at any zoom, searchable), and the style is inline, so the file opens anywhere without
a network. Every piece of text that comes from a user (study names, configuration values,
parameter names) is HTML-escaped; text inside the figures is escaped by matplotlib's SVG
writer.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from dicelab import _atomic, paper_space
from dicelab.exceptions import ConfigError
from dicelab.version import __version__

REPORT = "report.html"
#: The resolution of any part of a figure that is drawn as a bitmap inside its SVG.
RASTER_DPI = 200
#: The level below which a p-value is called significant in the summary.
ALPHA = 0.05

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
table.about th{text-align:left;font-weight:600;background:#f7f7f7}table.about td{text-align:left}
figure{margin:1em 0}figure svg{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}.note{color:#555;font-size:.92em}
.headline{font-size:1.3em;font-weight:600}
.summary{background:#fff8e1;border-left:4px solid #f0b400;padding:.6em 1em;margin:1em 0}
.summary p{margin:.3em 0}tr.changed td{font-weight:600}
details{margin:.6em 0}summary{cursor:pointer;color:#335}
"""

# Lets a test (or a reader's console) check that every figure rendered: after load, the body
# carries the number of figures (inline SVG or images) and of those that have a size.
_SCRIPT = """
window.addEventListener('load', function () {
  var svgs = Array.prototype.slice.call(document.querySelectorAll('figure svg'));
  var images = Array.prototype.slice.call(document.images);
  var drawn = svgs.filter(function (s) {
    var box = s.getBoundingClientRect(); return box.width > 0 && box.height > 0;
  }).length + images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', svgs.length + images.length);
  document.body.setAttribute('data-loaded', drawn);
});
"""


def e(value: object) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(value), quote=True)


# What matplotlib's SVG writer puts around the drawing that an inline <svg> does not need:
# the XML prolog and doctype, the RDF metadata, and the namespace declarations (the HTML
# parser puts <svg> in its namespace itself). Removing them also keeps every URL out of the
# page, so a reader can check that nothing is fetched.
_SVG_PREAMBLE = re.compile(r"\A.*?(?=<svg\b)", re.S)
_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_SVG_NAMESPACES = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')


def svg_markup(fig: Figure) -> str:
    """A figure as inline SVG markup. Text stays text (``svg.fonttype`` 'none'), escaped by
    matplotlib's writer; every element id is salted per figure, so several figures on one
    page never share a clip path or marker by accident."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": None}):
        # dpi only matters for a part a figure draws as a bitmap (a landscape's image)
        fig.savefig(buffer, format="svg", dpi=RASTER_DPI, bbox_inches="tight",
                    metadata={"Date": None})  # fmt: skip
    markup = _SVG_PREAMBLE.sub("", buffer.getvalue(), count=1)
    markup = _SVG_METADATA.sub("", markup, count=1)
    head, rest = markup.split(">", 1)
    return _SVG_NAMESPACES.sub("", head) + ">" + rest


def figure_html(fig: Figure, caption: str) -> str:
    """A figure as inline SVG with its caption (also the SVG's accessible label)."""
    markup = svg_markup(fig).replace("<svg ", f'<svg role="img" aria-label="{e(caption)}" ', 1)
    return f"<figure>{markup}<figcaption>{e(caption)}</figcaption></figure>"


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "—" if value != value else f"{value:.4g}"
    return e(value)


def table_html(
    rows: Sequence[Mapping[str, object]],
    columns: Sequence[str] | None = None,
    *,
    row_class: Sequence[str] | None = None,
) -> str:
    """A list of rows as an HTML table (every cell escaped); ``row_class`` names a CSS class
    per row (empty for none)."""
    if not rows:
        return '<p class="note">No rows.</p>'
    columns = list(columns or rows[0].keys())
    classes = list(row_class or [""] * len(rows))
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join(
        (f'<tr class="{e(cls)}">' if cls else "<tr>")
        + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns)
        + "</tr>"
        for row, cls in zip(rows, classes, strict=True)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def raw_table(summary: str, table: str) -> str:
    """A raw table folded away under ``summary``: the figures come first, the numbers on
    demand."""
    return f"<details><summary>{e(summary)}</summary>{table}</details>"


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass
class _Search:
    """What the report needs of the folder's study, read once."""

    study: Any  # optuna.Study
    definition: Mapping[str, Any]  # study.user_attrs["dicelab"], empty when absent
    trials: list[Any]  # FrozenTrials without the unused ones
    best: Any | None  # the best completed FrozenTrial


def _load_search(folder: Path, study_name: str, storage: str | None) -> _Search | None:
    """The folder's study (None when the folder holds none)."""
    import optuna
    from optuna.trial import TrialState

    from dicelab.analysis.tables import UNUSED
    from dicelab.tune.search import storage_spec
    from dicelab.tune.storage import open_storage

    spec = storage_spec(folder, storage)
    if storage is None and not Path(spec).is_file():
        return None
    study = optuna.load_study(study_name=study_name, storage=open_storage(spec))
    trials = [t for t in study.get_trials(deepcopy=False) if UNUSED not in t.system_attrs]
    done = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
    ]
    best = max(done, key=lambda t: (t.value, -t.number)) if done else None
    definition = study.user_attrs.get("dicelab")
    return _Search(study, definition if isinstance(definition, Mapping) else {}, trials, best)


# --- the header -------------------------------------------------------------------------------


def _versions() -> str:
    """The versions this report was made with."""
    import optuna
    import torch

    return f"dicelab {__version__}, torch {torch.__version__}, optuna {optuna.__version__}"


def _trained_versions(folder: Path) -> str | None:
    """The versions the evaluation or ablation runs were trained with, from one result.json."""
    for pattern in ("evaluate/*/result.json", "ablate/*/result.json", "runs/*/result.json"):
        for path in sorted(folder.glob(pattern))[:1]:
            try:
                result = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if "torch_version" in result:
                version = result.get("dicelab_version", "?")
                return f"dicelab {version}, torch {result['torch_version']}"
    return None


def _dates(search: _Search | None) -> str:
    """The report's date and, with a search, when its trials ran."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if search is None:
        return f"report written {now}"
    starts = [t.datetime_start for t in search.trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in search.trials if t.datetime_complete is not None]
    if not starts:
        return f"report written {now}"
    # Optuna stores naive local times; shown in UTC like the report's own date
    first = min(starts).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
    last = max(ends or starts).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"search ran {first} – {last}; report written {now}"


def _budget(search: _Search, summary: Mapping[str, Any] | None) -> str:
    """How many trials (by state), particles and generations the search used."""
    from dicelab.analysis.tables import GENERATION

    states: dict[str, int] = {}
    for t in search.trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    text = f"{len(search.trials)} trials (" + ", ".join(
        f"{n} {k}" for k, n in sorted(states.items())
    )
    text += ")"
    if summary and summary.get("counted") is not None:
        text += f", {summary['counted']} counted against the budget"
    definition = search.definition
    sampler = definition.get("sampler")
    if sampler in ("pso", "cmaes") and definition.get("particles"):
        text += f"; {definition['particles']} particles"
    generations = {
        t.system_attrs[GENERATION] for t in search.trials if GENERATION in t.system_attrs
    }
    if generations:
        text += f" × {len(generations)} generations"
    return text


def _header(folder: Path, search: _Search | None, evaluation: Mapping[str, Any] | None) -> str:
    """The block that says what was searched, how, with which seeds and versions, and when."""
    rows: list[tuple[str, str]] = []
    if search is not None:
        definition = search.definition
        config = definition.get("config") or {}
        data = config.get("data") or {}
        model = config.get("model") or {}
        train = config.get("train") or {}
        if data:
            dataset = str(data.get("name", "?"))
            if data.get("train_limit"):
                dataset += f" (first {data['train_limit']} training examples)"
            rows.append(("dataset", dataset))
        if model:
            shown = str(model.get("name", "?"))
            if model.get("width") is not None:
                shown += f", width {model['width']}"
            rows.append(("model", shown))
        if train.get("epochs") is not None:
            epochs = (
                f"{train['epochs']} per search trial (fitness: last-epoch validation accuracy)"
            )
            if evaluation is not None:
                epochs += f"; {evaluation.get('epochs')} for the evaluation"
            rows.append(("epochs", epochs))
        if definition:
            sampler = str(definition.get("sampler", "?"))
            details = []
            if definition.get("sampler") == "pso" and definition.get("sparse"):
                details.append(f"sparse start {definition['sparse']}")
            if definition.get("baseline_start"):
                details.append("first particle at the baseline")
            if definition.get("prune") not in (None, "none"):
                details.append(f"pruning {definition['prune']}")
            if definition.get("screen"):
                screen, screen_epochs = definition["screen"]
                details.append(f"screened {screen} particles for {screen_epochs} epochs")
            if definition.get("cut_threshold") is not None:
                details.append(f"cut threshold {definition['cut_threshold']}")
            rows.append(("sampler", sampler + (f" ({', '.join(details)})" if details else "")))
            space = list(definition.get("space") or {})
            if space:
                rows.append(("genes searched", f"{len(space)}: {', '.join(space)}"))
        summary = _read(folder / "search.json")
        rows.append(("budget used", _budget(search, summary)))
        seeds = []
        if definition.get("seed") is not None:
            seeds.append(f"sampler {definition['seed']}")
        if config.get("seed") is not None:
            seeds.append(f"training {config['seed']}")
            if evaluation is not None and evaluation.get("repeats"):
                first = int(config["seed"])
                last = first + int(evaluation["repeats"]) - 1
                seeds.append(
                    f"evaluation {first}–{last}" if last > first else f"evaluation {first}"
                )
        if seeds:
            rows.append(("seeds", ", ".join(seeds)))
        rows.append(("study", f"{search.study.study_name}"))
    rows.append(("versions", f"{_versions()} (this report)"))
    trained = _trained_versions(folder)
    if trained is not None:
        rows.append(("trained with", trained))
    rows.append(("date", _dates(search)))
    body = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    return f'<table class="about"><tbody>{body}</tbody></table>'


# --- the summary: null and negative results in words ------------------------------------------


def _is_baseline(search: _Search) -> bool:
    """Whether the best trial's genes decode to the no-randomness baseline configuration."""
    if search.best is None:
        return False
    genes = {g.param for g in paper_space.GENES}
    params = {k: float(v) for k, v in search.best.params.items() if k in genes}
    if not params:
        return False
    baseline = {g.param: float(g.baseline) for g in paper_space.GENES if g.param in params}
    return paper_space.decode_genes(params) == paper_space.decode_genes(baseline)


def _divergences(named: Mapping[str, Any]) -> str | None:
    """One sentence naming the diverged runs of the named retrained configurations (which the
    means leave out); None when none diverged. A value that is not a mapping is skipped."""
    from dicelab.tune.evaluate import divergence_note

    notes = (
        divergence_note(name, result)
        for name, result in named.items()
        if isinstance(result, Mapping)
    )
    found = [note for note in notes if note is not None]
    if not found:
        return None
    return (
        "Diverged (NaN or infinite loss or weights), left out of the means: "
        + "; ".join(found)
        + "."
    )


def _evaluation_sentence(evaluation: Mapping[str, Any]) -> str | None:
    """One or two sentences on whether the best configuration beat the baseline on test."""
    from dicelab.analysis.tables import difference

    best, base = evaluation.get("best"), evaluation.get("baseline")
    if not isinstance(best, Mapping) or not isinstance(base, Mapping):
        return None
    a, b = best.get("test_accuracy") or [], base.get("test_accuracy") or []
    if not a or not b:
        if _divergences({"best": best, "baseline": base}) is None:
            return None
        sides = [name for name, runs in (("best configuration", a), ("baseline", b)) if not runs]
        return (
            "The best configuration cannot be compared with the baseline: every run of the "
            f"{' and of the '.join(sides)} diverged."
        )
    found = difference(a, b)
    delta = float(found["delta"] or 0.0)
    accuracies = (
        f"test accuracy {best['mean']:.4f} ± {best['std']:.4f} against the baseline's "
        f"{base['mean']:.4f} ± {base['std']:.4f} (mean ± std)"
    )
    if found["p"] is None:
        return (
            f"The best configuration's {accuracies} cannot be tested for significance: with "
            f"{len(a)} and {len(b)} seeds there is no estimate of the noise between seeds "
            f"(the difference is {delta:+.4f}). Evaluate with --repeats 3 or more."
        )
    p, low, high = float(found["p"]), found["low"], found["high"]
    interval = f"the 95% confidence interval of the difference is [{low:+.4f}, {high:+.4f}]"
    tested = f"Welch's t-test p = {p:.3g} over {len(a)} and {len(b)} seeds"
    if p >= ALPHA:
        return (
            f"Not significant: the best configuration's {accuracies} differs by {delta:+.4f}, "
            f"which is within the noise between seeds ({tested}; {interval}, it includes 0)."
        )
    if delta < 0:
        return (
            f"A negative result: the best configuration is worse than the baseline on the test "
            f"set, {accuracies} ({tested}; {interval})."
        )
    return (
        f"The best configuration beats the baseline on the test set: {accuracies} "
        f"({tested}; {interval})."
    )


def _summary(search: _Search | None, evaluation: Mapping[str, Any] | None) -> list[str]:
    """The plain-words summary near the top, led by a null or negative result if there is
    one."""
    sentences = []
    if search is not None and search.best is not None and _is_baseline(search):
        start = " (the swarm's baseline start)" if search.definition.get("baseline_start") else ""
        sentences.append(
            f"The best configuration is the no-randomness baseline: trial {search.best.number}"
            f"{start} decodes to the baseline, so no randomness the search tried beat it on "
            "validation accuracy."
        )
    elif search is not None and search.best is None and search.trials:
        sentences.append("No trial of the search completed, so there is no best configuration.")
    if evaluation is not None:
        sentence = _evaluation_sentence(evaluation)
        if sentence is not None:
            sentences.append(sentence)
        diverged = _divergences({n: evaluation.get(n) for n in ("best", "baseline")})
        if diverged is not None:
            sentences.append(diverged)
    if not sentences:
        return []
    body = "".join(f"<p>{e(s)}</p>" for s in sentences)
    return [f'<div class="summary" id="summary">{body}</div>']


# --- sections ---------------------------------------------------------------------------------


def best_trial_rows(params: Mapping[str, float]) -> tuple[list[dict[str, str]], list[str]]:
    """A best trial's genes in real units beside their baseline; the CSS class of each row
    ("changed" where the value differs from the baseline). Non-gene parameters show as
    numbers."""
    by_param = {g.param: g for g in paper_space.GENES}
    genes = sorted((k for k in params if k in by_param), key=list(by_param).index)
    shown = paper_space.readable({k: float(params[k]) for k in genes})
    baseline = paper_space.readable({k: float(by_param[k].baseline) for k in genes})
    rows, classes = [], []
    for name in genes:
        same = paper_space.decode_genes({name: float(params[name])}) == paper_space.decode_genes(
            {name: float(by_param[name].baseline)}
        )
        rows.append({"gene": name, "value": shown[name], "baseline": baseline[name]})
        classes.append("" if same else "changed")
    for name in sorted(k for k in params if k not in by_param):
        rows.append({"gene": name, "value": paper_space.format_number(float(params[name])),
                     "baseline": "—"})  # fmt: skip
        classes.append("")
    return rows, classes


def _search_sections(folder: Path, search: _Search | None) -> list[str]:
    """History, best trial, correlations and importance of the folder's study."""
    if search is None:
        return []
    from dicelab.analysis.analyze import ANALYSIS, SUMMARY
    from dicelab.analysis.correlation import CorrelationRow, correlations, fdr, importances
    from dicelab.analysis.tables import (
        correlation_table,
        heatmap_caption,
        importance_table,
        plot_correlation_heatmap,
        plot_history,
        plot_importance,
    )

    study = search.study
    parts = ["<h2>Search</h2>"]
    if search.trials:
        generations = (
            "coloured by PSO generation"
            if search.definition.get("sampler", "pso") == "pso"
            else "one colour (the sampler has no generations)"
        )
        parts.append(
            figure_html(
                plot_history(study),
                f"Validation accuracy of every trial, {generations}; pruned trials (open "
                "triangles) at the last value they reported, failed trials as red crosses "
                "along the bottom; the red line is the best so far.",
            )
        )
    best = search.best
    if best is not None:
        rows, classes = best_trial_rows(best.params)
        parts.append(
            f"<p>Best trial {best.number}: validation accuracy {best.value:.4f}. Its genes in "
            "real units, beside the no-randomness baseline (bold: changed):</p>"
            + table_html(rows, row_class=classes)
        )
    saved = _read(folder / ANALYSIS / SUMMARY)
    if saved is not None:
        found_rows = [CorrelationRow(**r) for r in saved["correlations"]]
        found = saved.get("importance") or {}
    else:
        found_rows = correlations(study) if best is not None else []
        found = importances(study) if len(study.trials) >= 10 and best is not None else {}
    found_rows = fdr(found_rows)  # over every cell shown, whatever the file held
    if found_rows:
        parts += [
            "<h2>Correlation with validation accuracy, by optimizer</h2>",
            '<p class="note">Spearman rank correlation of each technique\'s strength with the '
            "validation accuracy over the completed trials. PSO concentrates its trials near "
            "good regions, so these describe the sampled trials; they are not causal. Cells "
            "are called significant only after the Benjamini–Hochberg false-discovery-rate "
            "correction over all cells shown.</p>",
            figure_html(plot_correlation_heatmap(found_rows), heatmap_caption(found_rows)),
            raw_table(
                "Raw table: ρ, p, Benjamini–Hochberg q and n per cell",
                table_html(correlation_table(found_rows)),
            ),
        ]
    if found:
        parts += [
            "<h2>Importance</h2>",
            figure_html(plot_importance(found), "Hyperparameter importance"),
            raw_table("Raw table: importance by evaluator", table_html(importance_table(found))),
        ]
    return parts


def _evaluation_section(evaluation: Mapping[str, Any] | None) -> list[str]:
    from dicelab.analysis.tables import error_reduction_table

    if evaluation is None:
        return []
    reduction = evaluation.get("error_reduction")
    why = evaluation.get("error_reduction_note")
    shown = f"{reduction:.1%}" if reduction is not None else f"n/a ({why})" if why else "n/a"
    parts = [
        "<h2>Best configuration against the baseline</h2>",
        f'<p class="headline">Relative test-error reduction: {e(shown)}</p>',
        f"<p>Trained on the full training set for {e(evaluation['epochs'])} epochs, "
        f"{e(evaluation['repeats'])} seeds each.</p>",
        table_html(error_reduction_table(evaluation)),
    ]
    diverged = _divergences({n: evaluation[n] for n in ("best", "baseline")})
    if diverged is not None:
        parts.append(f'<p class="note">{e(diverged)}</p>')
    return parts


def _diverged_share(row: Mapping[str, Any]) -> str | None:
    """The share of a retrained configuration's runs that diverged ("1/3"); None when none
    did."""
    diverged = row.get("diverged") or []
    return f"{len(diverged)}/{row['runs']}" if diverged else None


def _ablation_section(folder: Path) -> list[str]:
    from dicelab.analysis.tables import ablation_effects, plot_ablation

    ablation = _read(folder / "ablation.json")
    if ablation is None:
        return []
    rows = ablation["rows"]
    effects = {x["name"]: x for x in ablation_effects(rows)}
    table = []
    for r in rows:
        effect = effects.get(r["name"], {})
        table.append(
            {
                "variant": r["name"],
                "genes reset": ", ".join(r["reset"]) if r["name"] != "baseline" else "all",
                "mean": r["mean"],
                "std": r["std"],
                "Δ": effect.get("delta"),
                "95% CI low": effect.get("low"),
                "95% CI high": effect.get("high"),
                "p": r.get("p_value") if r.get("p_value") is not None else effect.get("p"),
                "diverged": _diverged_share(r),
            }
        )
    diverged = _divergences({r["name"]: r for r in rows})
    if diverged is None:  # the column only where a run diverged
        table = [{k: v for k, v in row.items() if k != "diverged"} for row in table]
    parts = [
        "<h2>Ablations</h2>",
        f"<p>{e(ablation['epochs'])} epochs, {e(ablation['repeats'])} seeds per variant. Each "
        "bar is the change Δ in mean test accuracy when the named genes are reset to the "
        "baseline, measured from the best configuration (the line at 0); the whiskers are "
        "95% confidence intervals of Δ (Welch's t over the seeds), and p is Welch's "
        "t-test.</p>",
    ]
    if effects:
        parts.append(
            figure_html(
                plot_ablation(rows),
                "Change in test accuracy from the best configuration, with 95% confidence "
                "intervals (none where a variant had one seed or no spread); the axis is "
                "centred on 0, so bar lengths are the differences.",
            )
        )
    parts.append(raw_table("Raw table: every variant", table_html(table)))
    if diverged is not None:
        parts.append(f'<p class="note">{e(diverged)}</p>')
    if ablation.get("inactive"):
        parts.append(
            '<p class="note">Not ablated, because their best value decodes to the '
            f"baseline: {e(', '.join(ablation['inactive']))}.</p>"
        )
    return parts


def _comparison_section(folder: Path) -> list[str]:
    comparison = _read(folder / "comparison.json")
    if comparison is None:
        return []
    rows = comparison["rows"]
    parts = ["<h2>Optimizer comparison</h2>", f"<p>{e(comparison.get('description', ''))}</p>"]
    shown = [r for r in rows if r["mean"] is not None]  # a method whose every run diverged: none
    if shown:
        fig = Figure(figsize=(7, 3.5), layout="constrained")
        ax = fig.add_subplot()
        # Points with whiskers, not bars: a bar's length would be read from a cut axis.
        ax.errorbar(
            [r["method"] for r in shown],
            [r["mean"] for r in shown],
            yerr=[r["std"] for r in shown],
            fmt="o",
            color="#55a868",
            capsize=4,
        )
        ax.margins(x=0.15)
        ax.set_ylabel("test accuracy (mean ± std)")
        ax.set_title("Optimizers compared")
        parts.append(
            figure_html(
                fig,
                "Test accuracy by optimizer, mean ± std over the seeds. Points, not bars: the "
                "axis is zoomed to the data, so read the differences from its scale.",
            )
        )
    columns = ["method", "mean", "std", "test_accuracy", "updates"]
    diverged = _divergences({r["method"]: r for r in rows})
    if diverged is not None:
        rows = [{**r, "diverged": _diverged_share(r)} for r in rows]
        columns.append("diverged")
    parts.append(raw_table("Raw table: every optimizer", table_html(rows, columns)))
    if diverged is not None:
        parts.append(f'<p class="note">{e(diverged)}</p>')
    return parts


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
    """Write ``<folder>/report.html`` from the results in ``folder``; its path.

    The page opens with a header (what was searched, how, seeds, versions, date) and a
    summary in words that leads with a null or negative result when there is one.
    """
    folder = Path(folder)
    search = _load_search(folder, study, storage)
    evaluation = _read(folder / "evaluation.json")
    sections = [
        *_evaluation_section(evaluation),
        *_search_sections(folder, search),
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
        + _header(folder, search, evaluation)
        + "\n".join([*_summary(search, evaluation), *sections])
        + f'<p class="note">Made by dicelab {e(__version__)}.</p>'
        f"<script>{_SCRIPT}</script></body></html>"
    )
    path = folder / REPORT
    _atomic.write_text(path, page)
    return path
