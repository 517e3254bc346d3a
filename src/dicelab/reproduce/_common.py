"""Settings shared by both papers' pipelines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MNIST5K_NARROW = (
    "data.name=mnist5k",
    "model.name=vgg",
    "model.width=8",
    "train.recalibrate_bn=true",
)
CIFAR10 = ("data.name=cifar10", "data.download=true", "model.name=vgg")

#: Training-set sizes of the datasets the recipes use (the official splits; mnist1d and
#: mnist5k as dicelab ships them), so a dry-run counts images without loading anything.
TRAIN_IMAGES = {
    "mnist": 60_000,
    "fashion-mnist": 60_000,
    "cifar10": 50_000,
    "cifar100": 50_000,
    "mnist1d": 4_000,
    "mnist5k": 4_000,
}

#: Training throughput measured by ``benchmarks/bench_gpu.py --record`` (one entry per
#: recipe model, dataset and device), read by the dry-runs to estimate what a protocol costs.
THROUGHPUT_FILE = Path(__file__).with_name("throughput.json")


#: The fields of one throughput entry, and those that identify it (a new measurement of the
#: same model, dataset, device, precision and batch size replaces the old one).
ENTRY_KEYS = (
    "model",
    "dataset",
    "device",
    "precision",
    "batch_size",
    "img_per_s",
    "peak_memory_mib",
    "measured",
    "command",
)
SAME_ENTRY = ("model", "dataset", "device", "precision", "batch_size")


def measured_throughput() -> list[dict[str, Any]]:
    """The recorded throughput entries (empty when none were recorded)."""
    if not THROUGHPUT_FILE.is_file():
        return []
    return list(json.loads(THROUGHPUT_FILE.read_text())["entries"])


def cost_lines(model: str, dataset: str, images: int) -> list[str]:
    """What training on ``images`` images (summed over every run of a protocol) would take on
    each device whose throughput for ``model`` on ``dataset`` was measured; a line saying
    so when none was."""
    lines = []
    for entry in measured_throughput():
        if entry["model"] == model and entry["dataset"] == dataset:
            hours = images / entry["img_per_s"] / 3600
            lines.append(
                f"  {hours:,.1f} h on {entry['device']} at {entry['img_per_s']:,.0f} img/s "
                f"(measured {entry['measured']}, batch {entry['batch_size']}, "
                f"{entry['precision']})"
            )
    if not lines:
        lines.append(
            f"  not measured for {model} on {dataset}: run benchmarks/bench_gpu.py --record"
        )
    return lines
