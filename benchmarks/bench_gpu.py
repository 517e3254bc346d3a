"""GPU readiness: every full-scale training recipe of ``dicelab reproduce`` for a few updates.

The recipes are read from :mod:`dicelab.reproduce` when the script runs (paper 1's search
configuration, ``PAPER1_SCALES["full"]``; each method of paper 3's, ``PAPER3_SCALES["full"]``
through ``paper3.method_configs``), so the benchmark measures what a full run would train.
Each trains through dicelab's Trainer on random images written as small files in the
dataset's official binary format (nothing is downloaded): one chunk of batches to warm up
(allocator, cuDNN autotuning, fused-kernel compilation), then timed chunks until ``--updates``
optimizer updates are done. It prints images per second (mean ± std over the timed chunks of
10 batches, with the 1-minute load average: on a shared machine it decides), the peak memory
(``torch.cuda.max_memory_allocated`` on a GPU, the peak resident set of the process on the
CPU) and the projected wall time of the recipe's whole protocol at that throughput.

``--record`` writes the plain-pass entries (paper 1's search, paper 3's SGD: one forward and
backward pass per image) into ``src/dicelab/reproduce/throughput.json`` (or ``--output``),
replacing an entry of the same model, dataset, device, precision and batch size; the dry-runs
(``dicelab reproduce ... --dry-run``) read it to estimate what a protocol costs.

    python benchmarks/bench_gpu.py --device cuda --updates 300 --record
    python benchmarks/bench_gpu.py --device cpu --threads 1 --updates 30 --record \
        --only paper1/search 'paper3/*resnet18-none'
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fnmatch
import json
import math
import os
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dicelab import _atomic
from dicelab.config import RunConfig, apply_overrides, from_dict, to_dict
from dicelab.data.standard import CIFAR_LAYOUTS
from dicelab.exceptions import ConfigError
from dicelab.reproduce import PAPER1_SCALES, PAPER3_SCALES, paper3
from dicelab.reproduce._common import ENTRY_KEYS, SAME_ENTRY, THROUGHPUT_FILE, TRAIN_IMAGES
from dicelab.reproduce.paper1 import protocol_images
from dicelab.train import Trainer
from dicelab.train.trainer import resolve_device

#: Batches per chunk (one epoch of the synthetic set): the warm-up, and the timing's grain.
CHUNK_BATCHES = 10


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One training configuration of a full protocol.

    Attributes:
        name: what it is, e.g. ``paper3/sam``.
        config: the run configuration as the protocol trains it.
        protocol_images: images the whole protocol trains on with this configuration.
        plain: one forward and backward pass per image (the throughput the dry-runs read).
    """

    name: str
    config: RunConfig
    protocol_images: int
    plain: bool


def train_images(config: RunConfig) -> int:
    """Training images of one epoch of ``config`` on the official training set."""
    total = TRAIN_IMAGES[config.data.name]
    if config.data.split == "search":
        return total - round(total * config.data.val_fraction)
    return total


def recipes() -> list[Recipe]:
    """Every full-scale recipe: paper 1's search, then each run configuration of paper 3
    (named ``paper3/<run>``, e.g. ``paper3/cifar10-resnet18-sam``)."""
    scale1 = PAPER1_SCALES["full"]
    config = scale1.config()
    steps = protocol_images(
        scale1, TRAIN_IMAGES[config.data.name], config.train.epochs, config.data.val_fraction
    )
    found = [Recipe("paper1/search", config, sum(steps.values()), plain=True)]
    scale3 = PAPER3_SCALES["full"]
    for run, config in paper3.method_configs(scale3).items():
        images = scale3.seeds * config.train.epochs * train_images(config)
        plain = config.optimizer.perturbation == "none"
        found.append(Recipe(f"paper3/{run}", config, images, plain))
    return found


def write_synthetic_cifar(name: str, root: Path, records: int) -> None:
    """Random CIFAR files of at least ``records`` training images in ``root/name``, in the
    official binary layout, and shrink the layout's record counts to match (this process
    only: the loader then reads these small files as it would the published ones)."""
    if name not in CIFAR_LAYOUTS:
        raise ConfigError(
            "data.name", name, f"synthetic data is written for {', '.join(CIFAR_LAYOUTS)} only"
        )
    layout = CIFAR_LAYOUTS[name]
    per_file = math.ceil(records / len(layout.train))
    layout = dataclasses.replace(layout, train_records=per_file, test_records=per_file)
    CIFAR_LAYOUTS[name] = layout
    folder = root / name / layout.folder
    folder.mkdir(parents=True, exist_ok=True)
    gen = np.random.default_rng(0)
    for member in (*layout.train, layout.test):
        labels = gen.integers(0, layout.num_classes, (per_file, layout.label_bytes), np.uint8)
        pixels = gen.integers(0, 256, (per_file, 3 * 32 * 32), np.uint8)
        (folder / member).write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())


def device_name(device: torch.device) -> str:
    """A readable name of the device: the GPU's model, or the CPU's with the thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"CPU {model}, {torch.get_num_threads()} thread(s)"


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: the GPU allocator's, or (Linux) the process's peak resident set."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
    except OSError:
        pass  # the peak then covers the whole process so far (ru_maxrss)


def peak_memory_mib(device: torch.device) -> float:
    """The peak since :func:`reset_peak_memory`, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    recipe: Recipe, device: str, updates: int, overrides: list[str], root: Path
) -> dict[str, Any]:
    """Train ``recipe`` for at least ``updates`` timed updates; its throughput (the mean and
    std over the timed chunks), peak memory and the 1-minute load average before and after."""
    config = recipe.config
    batch = config.train.batch_size
    images = batch * CHUNK_BATCHES
    write_synthetic_cifar(config.data.name, root, images)
    base = to_dict(config)
    settings = [
        f"data.root={root}",
        "data.download=false",
        "data.split=final",
        f"data.train_limit={images}",
        f"device={device}",
        *overrides,
    ]
    # Two batches make an update of m-RWP on consecutive batches: count the chunks by the
    # updates the trainer plans for one of them.
    one = from_dict(apply_overrides(base, [*settings, "train.epochs=1"]))
    per_chunk = Trainer(one).planned_updates()
    chunks = 1 + math.ceil(updates / per_chunk)  # the first warms up
    reset_peak_memory(resolve_device(one.device))
    trainer = Trainer(from_dict(apply_overrides(base, [*settings, f"train.epochs={chunks}"])))
    trainer.train_epoch()
    trainer.epoch += 1
    done = trainer.updates
    rates = []  # images per second of each timed chunk
    load = os.getloadavg()[0]
    while trainer.epoch < chunks:
        synchronize(trainer.device)
        start, seen = time.perf_counter(), trainer.examples_seen
        if trainer.train_epoch() is None:
            raise RuntimeError(f"{recipe.name} diverged on random data; nothing measured")
        synchronize(trainer.device)
        rates.append((trainer.examples_seen - seen) / (time.perf_counter() - start))
        trainer.epoch += 1
    img_per_s = statistics.mean(rates)
    return {
        "recipe": recipe.name,
        "model": config.model.name,
        "dataset": config.data.name,
        "device": device_name(trainer.device),
        "precision": trainer.config.train.precision,
        "batch_size": trainer.config.train.batch_size,
        "img_per_s": round(img_per_s, 1),
        "img_per_s_std": statistics.stdev(rates) if len(rates) > 1 else 0.0,
        "chunks": len(rates),
        "load": (load, os.getloadavg()[0]),
        "peak_memory_mib": round(peak_memory_mib(trainer.device), 1),
        "updates": trainer.updates - done,
        "protocol_hours": recipe.protocol_images / img_per_s / 3600,
    }


def record(path: Path, results: list[dict[str, Any]], command: str) -> list[dict[str, Any]]:
    """Write ``results`` into the throughput file at ``path`` (atomically), replacing entries
    of the same model, dataset, device, precision and batch size; the file's entries."""
    entries: list[dict[str, Any]] = []
    if path.is_file():
        entries = list(_read_entries(path))
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    for result in results:
        entry = {**result, "measured": today, "command": command}
        entry = {key: entry[key] for key in ENTRY_KEYS}
        entries = [e for e in entries if any(e[k] != entry[k] for k in SAME_ENTRY)]
        entries.append(entry)
    _atomic.write_json(path, {"entries": entries})
    return entries


def _read_entries(path: Path) -> list[dict[str, Any]]:
    """The entries of an existing throughput file."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise ConfigError("--output", str(path), 'must hold {"entries": [...]}')
    return list(data["entries"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto")
    parser.add_argument("--updates", type=int, default=300, help="timed optimizer updates")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="PATTERN",
        help="recipes whose name matches one of these shell patterns, e.g. "
        "'paper3/*resnet18-none' paper1/search (default: all; --list shows them)",
    )
    parser.add_argument("--list", action="store_true", help="print the recipes' names")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting on top of every recipe (tests shrink the model with it)",
    )
    parser.add_argument("--record", action="store_true", help="write the throughput file")
    parser.add_argument("--output", type=Path, default=THROUGHPUT_FILE, help="throughput file")
    args = parser.parse_args(argv)
    if args.updates < 1:
        parser.error(f"--updates: got {args.updates}; must be at least 1")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads: got {args.threads}; must be at least 1")
        torch.set_num_threads(args.threads)
    found = recipes()
    if args.list:
        print("\n".join(recipe.name for recipe in found))
        return 0
    if args.only is not None:
        names = [recipe.name for recipe in found]
        found = [r for r in found if any(fnmatch.fnmatch(r.name, p) for p in args.only)]
        if not found:
            parser.error(f"--only: {args.only} match no recipe; the recipes: {', '.join(names)}")
    try:
        results = []
        with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
            for recipe in found:
                result = measure(recipe, args.device, args.updates, args.set, Path(tmp))
                results.append(result)
                print(
                    f"{recipe.name}: {result['model']}/{result['dataset']} on "
                    f"{result['device']}, {result['precision']}, batch {result['batch_size']}, "
                    f"{result['updates']} updates: {result['img_per_s']:,.1f} ± "
                    f"{result['img_per_s_std']:,.1f} img/s over {result['chunks']} chunks of "
                    f"{CHUNK_BATCHES} batches, peak {result['peak_memory_mib']:,.0f} MiB, load "
                    f"{result['load'][0]:.1f} → {result['load'][1]:.1f}; the protocol's "
                    f"{recipe.protocol_images:,} images: {result['protocol_hours']:,.1f} h",
                    flush=True,
                )
    except ConfigError as err:
        print(f"bench_gpu: error: {err}", file=sys.stderr)
        return 2
    by_paper: dict[str, float] = {}
    for result in results:
        paper = result["recipe"].split("/")[0]
        by_paper[paper] = by_paper.get(paper, 0.0) + result["protocol_hours"]
    for paper, hours in by_paper.items():
        print(f"{paper} full protocol (training only, measured recipes): {hours:,.1f} h")
    if args.record:
        command = shlex.join(["python", "benchmarks/bench_gpu.py", *(argv or sys.argv[1:])])
        plain = [r for r, recipe in zip(results, found, strict=True) if recipe.plain]
        record(args.output, plain, command)
        print(f"recorded {len(plain)} entr{'y' if len(plain) == 1 else 'ies'} in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
