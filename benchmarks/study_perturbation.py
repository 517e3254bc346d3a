"""Accuracy study: SGD vs SAM, RWP, m-RWP, ARWP, m-ARWP on a CPU-scale task, several seeds.

Every method trains the same model on the same data with the same base optimizer; the mixed
methods on consecutive batches spend two batches per update, so they get twice the epochs
(as the authors double theirs) and the same number of updates. Prints a markdown table of test
accuracy, mean ± std over seeds, with updates and seconds per run.

    python benchmarks/study_perturbation.py --seeds 0 1 2 --workers 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

from dicelab.config import load_config
from dicelab.train import Trainer

METHODS = ("none", "sam", "rwp", "mrwp", "arwp", "marwp")
DOUBLED = ("mrwp", "marwp")  # consecutive batches: two per update


def run(job: tuple[str, int, list[str], int]) -> dict[str, Any]:
    """Train one (method, seed) in this process with one torch thread."""
    method, seed, settings, epochs = job
    torch.set_num_threads(1)
    overrides = [
        *settings,
        f"optimizer.perturbation={method}",
        f"seed={seed}",
        f"train.epochs={epochs * 2 if method in DOUBLED else epochs}",
    ]
    start = time.perf_counter()
    result = Trainer(load_config(None, overrides)).fit()
    return {
        "method": method,
        "seed": seed,
        "status": result.status,
        "test_acc": result.test_acc,
        "updates": result.updates,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[
            "data.name=mnist5k",
            "model.name=vgg",
            "device=cpu",
            "optimizer.name=momentum",
            "optimizer.lr=0.05",
            "train.reduction=mean",
            "data.split=final",
        ],
        help="configuration overrides shared by every run",
    )
    args = parser.parse_args()
    jobs = [(m, s, args.settings, args.epochs) for s in args.seeds for m in args.methods]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(run, jobs))
    print(f"settings: {' '.join(args.settings)}; epochs {args.epochs} (x2 for m-variants)\n")
    print("| method | test accuracy (mean ± std) | per seed | updates | s/run |")
    print("|---|---|---|---|---|")
    for method in args.methods:
        mine = [r for r in rows if r["method"] == method]
        accs = [r["test_acc"] for r in mine if r["test_acc"] is not None]
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        mean = f"{statistics.mean(accs):.4f} ± {spread:.4f}" if accs else "diverged"
        seeds = ", ".join(f"{a:.4f}" for a in accs)
        secs = statistics.mean(r["seconds"] for r in mine)
        print(f"| {method} | {mean} | {seeds} | {mine[0]['updates']} | {secs:.0f} |")


if __name__ == "__main__":
    main()
