"""Per-technique cost: seconds per epoch with one technique on (mid-range) vs. all off.

For each technique, a trainer with only that technique at a typical setting
(:func:`dicelab.techniques.mid_range`) and a trainer with none alternate epochs on the same
data, model and optimizer; the table gives the ratio of median epoch times (targets: <= 1.10
for every non-augmentation technique, <= 1.30 for the whole augmentation set together).

    python benchmarks/bench_techniques.py --dataset mnist5k --model vgg --limit 1024 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from dicelab.config import apply_overrides, from_dict
from dicelab.techniques import list_techniques, mid_range
from dicelab.train import Trainer

AUGMENTATIONS = ("flip", "rotation", "zoom", "translation", "contrast")


def trainer(args: argparse.Namespace, techniques: dict[str, Any]) -> Trainer:
    """A trainer for the benchmark workload with ``techniques`` on."""
    overrides = [
        f"data.name={args.dataset}",
        f"model.name={args.model}",
        f"data.train_limit={args.limit}",
        "data.split=final",
        "device=cpu",
    ]
    return Trainer(from_dict(apply_overrides({"techniques": techniques}, overrides)))


def compare(args: argparse.Namespace, techniques: dict[str, Any]) -> tuple[float, float]:
    """Median seconds per epoch: (all off, with ``techniques``), epochs alternating."""
    off, on = trainer(args, {}), trainer(args, techniques)
    off.train_epoch()  # warm-up
    on.train_epoch()
    off_times, on_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        off.train_epoch()
        off_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        on.train_epoch()
        on_times.append(time.perf_counter() - start)
    return statistics.median(off_times), statistics.median(on_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default="vgg")
    parser.add_argument("--limit", type=int, default=1024, help="training images per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per contestant")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows: list[tuple[str, str, float, float]] = []
    for cls in list_techniques():
        technique = mid_range(cls)
        setting = f"{cls.strength}={getattr(technique, cls.strength)}"
        off, on = compare(args, {cls.name: technique.hyperparameters()})
        rows.append((cls.name, setting, off, on))
    classes = {cls.name: cls for cls in list_techniques()}
    together = {name: mid_range(classes[name]).hyperparameters() for name in AUGMENTATIONS}
    off, on = compare(args, together)
    rows.append(("all augmentations", "+".join(AUGMENTATIONS), off, on))

    print(
        f"{args.model} on {args.dataset}, {args.limit} images/epoch, batch 128, "
        f"{args.threads} threads, median of {args.repeats} alternating epochs"
    )
    print("| technique | setting | off s/epoch | on s/epoch | ratio |")
    print("|---|---|---|---|---|")
    for name, setting, off, on in rows:
        print(f"| {name} | {setting} | {off:.3f} | {on:.3f} | {on / off:.3f} |")


if __name__ == "__main__":
    main()
