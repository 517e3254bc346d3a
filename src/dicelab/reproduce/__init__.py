"""``dicelab reproduce paper1|paper3 --scale smoke|cpu|full``: each paper's pipeline in one
command, ending in ``report.html``; ``--dry-run`` prints the resolved protocol and its cost.

- **paper1** (arXiv 2404.03992): a PSO search over the 22 genes → ``evaluate`` (best against
  the no-randomness baseline, the test-error reduction) → ``ablate`` (by component and by
  category) → ``analyze`` (correlations by optimizer, importance) → ``report``
  (:mod:`dicelab.reproduce.paper1`).
- **paper3** (arXiv 2404.00357): SGD, SAM, RWP, m-RWP, ARWP and m-ARWP with repeats. The
  mixed methods get twice the epochs, so every method takes the same number of updates. Then
  the Hessian (top eigenvalue, trace) and a 1-D loss landscape of each method's seed-0 model
  are computed, and the report is written (:mod:`dicelab.reproduce.paper3`).

The scales:

- ``smoke`` finishes in a few minutes on a 2-core CPU: paper 1 on mnist1d with its reference
  CNN, paper 3 on mnist5k.
- ``cpu`` is a benchmark with headroom on one thread, both papers on mnist1d (bundled): paper
  1's two-phase search, 10-seed evaluation and ablation in about 25 minutes; paper 3's six
  methods on the 1-D CNN and the MLP, 5 seeds each, with Welch p-values against SGD and SAM,
  in about 16 minutes (docs/REPRODUCTION.md).
- ``full`` is the authors' protocol, every value cited in docs/FIDELITY.md: paper 1 on one
  of MNIST, Fashion-MNIST, CIFAR-10 (default) or CIFAR-100 (``benchmark``), with the
  ``faithful`` choices; paper 3 on ResNet-18 and WRN-16-8 × CIFAR-10 and CIFAR-100 with the
  authors' augmentation and schedules. It is meant for GPU workers (paper 1 with a shared
  PostgreSQL storage, ``--storage``) and downloads its datasets (``data.download``).

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
from dicelab.reproduce.paper1 import PAPER1_FULL, PAPER1_SCALES, Paper1
from dicelab.reproduce.paper3 import PAPER3_SCALES, Paper3

PAPERS = ("paper1", "paper3")
SCALES = ("smoke", "cpu", "full")
__all__ = [
    "PAPER1_FULL",
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


def _pipeline(paper: str, scale: str, benchmark: str | None) -> Paper1 | Paper3:
    """The pipeline of ``paper`` at ``scale``; ``benchmark`` picks paper 1's full-scale
    dataset and is refused anywhere else."""
    _check(paper, scale)
    if benchmark is None:
        return PAPER1_SCALES[scale] if paper == "paper1" else PAPER3_SCALES[scale]
    if paper != "paper1" or scale != "full":
        raise ConfigError("--benchmark", benchmark, "applies to paper1 --scale full only")
    if benchmark not in PAPER1_FULL:
        raise UnknownNameError("--benchmark", benchmark, PAPER1_FULL, kind="benchmark")
    return PAPER1_FULL[benchmark]


def reproduce(
    paper: str,
    scale: str,
    *,
    out: str | Path | None = None,
    workers: int = 2,
    storage: str | None = None,
    seed: int = 0,
    benchmark: str | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Run (or continue) a paper's pipeline; the path of its report.

    ``seed`` is paper 1's search seed (the swarm's start and moves); the training seeds stay
    those of the scale's configuration, so two seeds differ only in what the search found.
    ``benchmark`` picks paper 1's full-scale dataset (:data:`PAPER1_FULL`; CIFAR-10 by
    default).
    """
    chosen = _pipeline(paper, scale, benchmark)
    if workers < 1:
        raise ConfigError("--workers", workers, "must be >= 1")
    if scale == "full" and paper == "paper1" and storage is None:
        raise ConfigError(
            "--storage",
            None,
            "the full scale runs many workers: give a shared database, e.g. "
            "postgresql://user:pass@host/db",
        )
    suffix = f"-{benchmark}" if benchmark else ""
    folder = Path(out or Path("runs") / f"reproduce-{paper}-{scale}{suffix}")
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(chosen, Paper1):
        return paper1.run(chosen, folder, workers, storage, seed, log)
    return paper3.run(chosen, folder, workers, log)


def dry_run(paper: str, scale: str, benchmark: str | None = None) -> str:
    """The resolved protocol of every method and run of a pipeline (every hyperparameter,
    epochs, updates, seeds) and its estimated cost from measured throughput; nothing runs."""
    chosen = _pipeline(paper, scale, benchmark)
    if isinstance(chosen, Paper1):
        return paper1.dry_run(chosen)
    return paper3.dry_run(chosen)


def describe(paper: str, scale: str) -> dict[str, Any]:
    """The settings of one pipeline, for listings and the docs."""
    return asdict(_pipeline(paper, scale, None))
