"""Time per update of the perturbation optimizers relative to plain SGD, side by side.

In-process contestants (SGD, RWP, ARWP, SAM, m-RWP and m-ARWP on consecutive batches) train the
same model on the same data with the whole machine (``--threads``), their epochs alternating;
seconds per update are the median epoch time over the epoch's updates. Parallel m-RWP then runs
under torchrun with 2 processes of one thread each on the same workload, and SAM is timed again
afterwards so the parallel figure is compared with SAM measured on both sides of it.
Targets (issue 4): RWP, ARWP <= 1.15x SGD; SAM ~ 2x; m-ARWP <= 1.05x SAM; parallel m-RWP on
2 processes <= 0.75x SAM.

    python benchmarks/bench_perturbation.py --dataset mnist5k --model vgg --limit 1024
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dicelab.config import load_config
from dicelab.train import Trainer

CONTESTANTS = ("none", "rwp", "arwp", "sam", "mrwp", "marwp")


def settings(args: argparse.Namespace) -> list[str]:
    return [
        f"data.name={args.dataset}",
        f"model.name={args.model}",
        f"data.train_limit={args.limit}",
        "data.split=final",
        "device=cpu",
        "optimizer.name=momentum",
        "optimizer.lr=0.01",
        "train.reduction=mean",
    ]


def seconds_per_update(trainer: Trainer) -> float:
    before = trainer.updates
    start = time.perf_counter()
    trainer.train_epoch()
    return (time.perf_counter() - start) / (trainer.updates - before)


def in_process(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, float]:
    """Median seconds per update of each contestant, epochs alternating."""
    trainers = {
        name: Trainer(load_config(None, [*settings(args), f"optimizer.perturbation={name}"]))
        for name in names
    }
    for trainer in trainers.values():  # warm-up
        trainer.train_epoch()
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.repeats):
        for name, trainer in trainers.items():
            times[name].append(seconds_per_update(trainer))
    return {name: statistics.median(values) for name, values in times.items()}


def parallel(args: argparse.Namespace) -> float:
    """Median seconds per update of parallel m-RWP under torchrun, 2 processes x 1 thread."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
            "--master-addr=127.0.0.1", f"--master-port={port}",
            "-m", "dicelab", "train", "--threads=1", "--quiet", "--out", out,
        ]  # fmt: skip
        for setting in [
            *settings(args),
            "optimizer.perturbation=mrwp",
            f"train.epochs={args.repeats + 1}",
        ]:
            command += ["--set", setting]
        subprocess.run(command, check=True, capture_output=True)
        rows = [
            json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()
        ]
    per_update = [
        row["epoch_time_s"] / (row["updates"] - previous["updates"])
        for previous, row in zip(rows, rows[1:], strict=False)  # the first epoch warms up
    ]
    return statistics.median(per_update)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default="vgg")
    parser.add_argument("--limit", type=int, default=1024, help="training images per epoch")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per contestant")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    times = in_process(args, CONTESTANTS)
    par = parallel(args)
    sam_after = in_process(args, ("sam",))["sam"]
    sam = (times["sam"] + sam_after) / 2
    base = times["none"]
    print(
        f"{args.model} on {args.dataset}, {args.limit} images/epoch, batch 128, momentum SGD; "
        f"in-process {args.threads} threads, median of {args.repeats} alternating epochs"
    )
    print("| optimizer | ms/update | vs SGD | vs SAM |")
    print("|---|---|---|---|")
    rows = [(name, times[name]) for name in CONTESTANTS]
    rows.append(("mrwp, torchrun 2 x 1 thread", par))
    for name, t in rows:
        print(f"| {name} | {t * 1e3:.1f} | {t / base:.2f} | {t / sam:.2f} |")
    before, after = times["sam"] * 1e3, sam_after * 1e3
    print(f"(SAM before / after the parallel run: {before:.1f} / {after:.1f} ms)")


if __name__ == "__main__":
    main()
