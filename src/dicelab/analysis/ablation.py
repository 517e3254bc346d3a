"""Ablations of a search's best configuration: which randomness carries the improvement.

Starting from the best trial, each ablation resets part of it to the no-randomness baseline
and retrains with the evaluation protocol (full training set, the final epochs, ``repeats``
seeds), as the authors' ablation cells do:

- **by component**: one searched gene at a time, for each gene whose best value differs from
  its baseline value in effect (a shuffle gene of 0.4 rounds to off: it is listed as
  inactive, not retrained);
- **by category**: all the genes of one category at a time. A technique gene belongs to its
  technique's category (``dicelab list techniques``). The optimizer, learning-rate and
  batch-size genes belong to "optimization", as in the authors' grouping.

Each row gives the test accuracy (mean ± std over seeds), its change from the best
configuration, the standard error of that change, sqrt(s²_a/n_a + s²_b/n_b), and Welch's
t-test p-value. The best configuration and the full baseline are the two reference rows.

A run that diverges (NaN or infinite loss or weights) does not stop the ablation: a row's
numbers are over its completed runs, the table marks the share that diverged, and a line
under it names the seeds (:func:`dicelab.tune.evaluate.retrain`). A variant none of whose
runs completed has no mean, and no change from the best configuration: "diverged (3/3)".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scipy import stats

from dicelab import _atomic, paper_space
from dicelab.config import config_hash
from dicelab.techniques import TECHNIQUES
from dicelab.tune.evaluate import accuracy_text, best_trial, divergence_note, retrain
from dicelab.tune.objective import SearchSpace, configure
from dicelab.tune.search import SearchOptions, open_study

ABLATION = "ablation.json"
ABLATION_MD = "ablation.md"


def category_of(gene: paper_space.Gene) -> str:
    """The reporting category of a gene: its technique's, or "optimization" for the optimizer,
    learning rate and batch size."""
    if gene.technique is None:
        return "optimization"
    return str(TECHNIQUES.get(gene.technique).category.value)


@dataclass
class AblationRow:
    """One retrained variant and its change from the best configuration, over the runs that
    completed (mean and std are None when none did, and then so is the change)."""

    kind: str  # "reference", "component" or "category"
    name: str
    reset: list[str]  # the genes set back to their baseline
    test_accuracy: list[float]  # of the completed runs
    mean: float | None
    std: float | None
    delta: float | None  # mean − the best configuration's mean
    delta_se: float | None
    p_value: float | None
    runs: int  # how many were run, completed or not
    diverged: list[dict[str, Any]]  # {"seed", "epoch", "message"} of each diverged run


def variants(
    space: SearchSpace, best: dict[str, float], inactive: Collection[str] = ()
) -> list[tuple[str, str, list[str]]]:
    """(kind, name, genes reset) of every ablation of ``best``, references first.

    A gene is ablated when its best value differs from its baseline value, unless it is in
    ``inactive``: genes whose best value decodes to the same configuration as the baseline
    (a shuffle gene of 0.4 rounds to off), so resetting them would change nothing.
    """
    baseline = space.baseline_params()
    changed = [
        n
        for n in space.distributions()
        if not math.isclose(best[n], baseline[n]) and n not in inactive
    ]
    rows: list[tuple[str, str, list[str]]] = [("reference", "best", [])]
    rows += [("component", f"without {name}", [name]) for name in changed]
    by_category: dict[str, list[str]] = {}
    for gene in space.genes:
        if gene.param in changed:
            by_category.setdefault(category_of(gene), []).append(gene.param)
    rows += [("category", f"without {cat}", genes) for cat, genes in sorted(by_category.items())]
    rows.append(("reference", "baseline", list(space.distributions())))
    return rows


def ablate(
    options: SearchOptions,
    *,
    epochs: int | None = None,
    repeats: int = 3,
    workers: int = 1,
    say: Callable[[str], None] | None = None,
) -> list[AblationRow]:
    """Retrain the best configuration and every ablation of it; write ablation.json/.md.
    ``say`` gets one progress line per ended run (completed or diverged)."""
    study = open_study(options)
    best = dict(best_trial(study).params)
    space = options.space()
    base = options.base()
    baseline = space.baseline_params()
    reference = config_hash(configure(base, space, best))
    inactive = [
        name
        for name in space.distributions()
        if config_hash(configure(base, space, {**best, name: baseline[name]})) == reference
        and not math.isclose(best[name], baseline[name])
    ]
    plan = variants(space, best, inactive)
    configs = {}
    for _kind, name, reset in plan:
        params = {**best, **{gene: baseline[gene] for gene in reset}}
        configs[_folder(name)] = configure(base, space, params)
    results = retrain(
        configs,
        Path(options.out) / "ablate",
        epochs=epochs,
        repeats=repeats,
        workers=workers,
        say=say,
    )
    best_result = results["best"]
    rows = []
    for kind, name, reset in plan:
        got = results[_folder(name)]
        delta = se = p = None
        if name != "best" and got["mean"] is not None and best_result["mean"] is not None:
            delta = got["mean"] - best_result["mean"]
            n_a, n_b = len(got["test_accuracy"]), len(best_result["test_accuracy"])
            se = math.sqrt(got["std"] ** 2 / n_a + best_result["std"] ** 2 / n_b)
            if n_a > 1 and n_b > 1 and (got["std"] > 0 or best_result["std"] > 0):
                p = float(
                    stats.ttest_ind(
                        got["test_accuracy"], best_result["test_accuracy"], equal_var=False
                    ).pvalue
                )
        rows.append(
            AblationRow(
                kind,
                name,
                reset,
                got["test_accuracy"],
                got["mean"],
                got["std"],
                delta,
                se,
                p,
                runs=got["runs"],
                diverged=got["diverged"],
            )
        )
    summary = {
        "study": options.study,
        "epochs": best_result["epochs"],
        "repeats": repeats,
        "inactive": inactive,
        "rows": [asdict(r) for r in rows],
        "divergences": divergences(rows),
    }
    _atomic.write_json(Path(options.out) / ABLATION, summary)
    table = markdown(rows, best_result["epochs"], repeats, inactive)
    _atomic.write_text(Path(options.out) / ABLATION_MD, table)
    return rows


def _folder(name: str) -> str:
    return name.replace(" ", "-")


def divergences(rows: list[AblationRow]) -> list[str]:
    """One line per variant with a diverged run (:func:`dicelab.tune.evaluate.divergence_note`)."""
    notes = (divergence_note(r.name, asdict(r)) for r in rows)
    return [note for note in notes if note is not None]


def markdown(
    rows: list[AblationRow], epochs: int, repeats: int, inactive: Collection[str] = ()
) -> str:
    """The ablation as a markdown table; a variant with diverged runs shows their share in its
    accuracy cell, and a line under the table names their seeds."""
    lines = [
        f"Ablations of the best configuration: {epochs} epochs on the full training set, "
        f"{repeats} seeds each. Δ is the change in mean test accuracy from the best "
        "configuration, ± its standard error; p is Welch's t-test.",
        "",
        "| kind | variant | genes reset | test accuracy (mean ± std) | Δ ± s.e. | p |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        reset = ", ".join(r.reset) if r.kind != "reference" or r.name != "baseline" else "all"
        delta = "—" if r.delta is None else f"{r.delta:+.4f} ± {r.delta_se:.4f}"
        p = "—" if r.p_value is None else f"{r.p_value:.3g}"
        accuracy = accuracy_text(asdict(r))
        lines.append(f"| {r.kind} | {r.name} | {reset or '—'} | {accuracy} | {delta} | {p} |")
    notes = divergences(rows)
    if notes:
        lines += [
            "",
            "Diverged (NaN or infinite loss or weights), left out of the means and of Δ: "
            + "; ".join(notes)
            + ".",
        ]
    if inactive:
        lines += [
            "",
            f"Not ablated, because their best value decodes to the baseline (no effect): "
            f"{', '.join(inactive)}.",
        ]
    return "\n".join(lines) + "\n"
