"""``dicelab analyze``: tables over every completed trial of a search; never trains.

It writes into ``<out>/analysis/``, each table as CSV and as markdown:

- ``correlations``: the Spearman correlation of each gene's strength with the validation
  accuracy, grouped by optimizer, with p-values and Benjamini–Hochberg q-values (the
  p-values corrected for the false discovery rate over the whole table, so that a table of
  many cells does not show chance "significant" ones), and n per cell. A PSO search
  concentrates its trials near good regions, so these correlations describe the sampled
  trials, not causes.
- ``importance``: hyperparameter importance by PED-ANOVA and fANOVA (Optuna's evaluators).
  It needs at least 10 completed trials.
- ``error_reduction``: the best-against-baseline table of ``dicelab evaluate``, when that has
  run.

``analysis.json`` holds the same results for the report.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dicelab import _atomic
from dicelab._progress import Progress
from dicelab.analysis.correlation import (
    MIN_IMPORTANCE_TRIALS,
    correlations,
    importances,
)
from dicelab.analysis.tables import (
    correlation_table,
    error_reduction_table,
    importance_table,
    to_csv,
    to_markdown,
)
from dicelab.tune.evaluate import EVALUATION
from dicelab.tune.search import SearchOptions, open_study

ANALYSIS = "analysis"
SUMMARY = "analysis.json"


def _write(folder: Path, name: str, rows: list[dict[str, Any]]) -> None:
    to_csv(rows, folder / f"{name}.csv")
    _atomic.write_text(folder / f"{name}.md", to_markdown(rows) + "\n")


def analyze(
    options: SearchOptions,
    *,
    importance: bool = True,
    seed: int = 0,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compute and write the tables of a search; the summary written to analysis.json.
    ``say`` gets one line per finished step (correlations, importance, error reduction)."""
    study = open_study(options)
    folder = Path(options.out) / ANALYSIS
    progress = Progress(3, say)
    rows = correlations(study)
    _write(folder, "correlations", correlation_table(rows))
    progress.step(f"correlations by optimizer: {len(rows)} rows")
    summary: dict[str, Any] = {
        "study": options.study,
        "completed_trials": sum(1 for t in study.trials if t.value is not None),
        "correlations": [asdict(r) for r in rows],
        "importance": {},
        "notes": [],
    }
    if importance and summary["completed_trials"] >= MIN_IMPORTANCE_TRIALS:
        found = importances(study, seed=seed)
        summary["importance"] = found
        _write(folder, "importance", importance_table(found))
        progress.step(f"importance: {', '.join(found)}")
    else:
        if importance:
            summary["notes"].append(
                f"importance needs at least {MIN_IMPORTANCE_TRIALS} completed trials"
            )
        progress.step("importance: skipped")
    evaluation = Path(options.out) / EVALUATION
    if evaluation.is_file():
        table = error_reduction_table(json.loads(evaluation.read_text()))
        summary["error_reduction"] = table
        _write(folder, "error_reduction", table)
    progress.step("error-reduction table" if evaluation.is_file() else "no evaluation yet")
    _atomic.write_json(folder / SUMMARY, summary)
    return summary
