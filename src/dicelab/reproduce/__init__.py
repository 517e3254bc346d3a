"""``dicelab reproduce paper1|paper3 --scale smoke|cpu|full``: each paper's pipeline in one
command, ending in ``report.html``.

- **paper1** (arXiv 2404.03992): a PSO search over the 22 genes → ``evaluate`` (best against
  the no-randomness baseline, the test-error reduction) → ``ablate`` (by component and by
  category) → ``analyze`` (correlations by optimizer, importance) → ``report``.
- **paper3** (arXiv 2404.00357): SGD, SAM, RWP, m-RWP, ARWP and m-ARWP with repeats. The
  mixed methods get twice the epochs, so every method takes the same number of updates. Then
  the Hessian (top eigenvalue, trace) and a 1-D loss landscape of each method's seed-0 model
  are computed, and the report is written.

The scales:

- ``smoke`` finishes in about 2 minutes on a 2-core CPU. Paper 1's smoke search runs on the
  generated mnist1d data with its reference CNN, a task far from its ceiling after 10 epochs,
  so a 30-trial search finds a real gain (measured in docs/REPRODUCTION.md); paper 3's uses
  mnist5k.
- ``cpu`` is the best honest reproduction on a 2-core machine, in about an hour per paper.
- ``full`` is the papers' protocol (CIFAR-10, the paper VGG, 20-epoch fitness, 22 particles;
  200-epoch training for paper 3). It is meant for GPU workers and a shared PostgreSQL storage
  (``--storage``), and it downloads CIFAR-10 (``data.download``).

Every step resumes. Run the same command again after an interruption: finished trials and
runs are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dicelab.exceptions import ConfigError, UnknownNameError
from dicelab.reproduce import paper1, paper3
from dicelab.reproduce.paper1 import PAPER1_SCALES, Paper1
from dicelab.reproduce.paper3 import PAPER3_SCALES, Paper3

PAPERS = ("paper1", "paper3")
SCALES = ("smoke", "cpu", "full")
__all__ = [
    "PAPER1_SCALES",
    "PAPER3_SCALES",
    "PAPERS",
    "SCALES",
    "Paper1",
    "Paper3",
    "describe",
    "dry_run",
    "reproduce",
]


def _check(paper: str, scale: str) -> None:
    if paper not in PAPERS:
        raise UnknownNameError("paper", paper, PAPERS, kind="paper")
    if scale not in SCALES:
        raise UnknownNameError("--scale", scale, SCALES, kind="scale")


def reproduce(
    paper: str,
    scale: str,
    *,
    out: str | Path | None = None,
    workers: int = 2,
    storage: str | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Path:
    """Run (or continue) a paper's pipeline; the path of its report.

    ``seed`` is paper 1's search seed (the swarm's start and moves); the training seeds stay
    those of the scale's configuration, so two seeds differ only in what the search found.
    """
    _check(paper, scale)
    if workers < 1:
        raise ConfigError("--workers", workers, "must be >= 1")
    if scale == "full" and paper == "paper1" and storage is None:
        raise ConfigError(
            "--storage",
            None,
            "the full scale runs many workers: give a shared database, e.g. "
            "postgresql://user:pass@host/db",
        )
    folder = Path(out or Path("runs") / f"reproduce-{paper}-{scale}")
    folder.mkdir(parents=True, exist_ok=True)
    if paper == "paper1":
        return paper1.run(PAPER1_SCALES[scale], folder, workers, storage, seed, log)
    return paper3.run(PAPER3_SCALES[scale], folder, workers, log)


def dry_run(paper: str, scale: str) -> str:
    """The resolved protocol of every method and run of a pipeline (every hyperparameter,
    epochs, updates, seeds) and its estimated cost from measured throughput; nothing runs."""
    _check(paper, scale)
    if paper == "paper1":
        return paper1.dry_run(PAPER1_SCALES[scale])
    return paper3.dry_run(PAPER3_SCALES[scale])


def describe(paper: str, scale: str) -> dict[str, Any]:
    """The settings of one pipeline, for listings and the docs."""
    _check(paper, scale)
    chosen = PAPER1_SCALES[scale] if paper == "paper1" else PAPER3_SCALES[scale]
    return asdict(chosen)
