"""Trainer overhead: dicelab's Trainer against a minimal hand-written PyTorch loop.

Both train the same model (same initial weights, same memory format) on the same batches in
the same order with the same optimizer, precision and thread count. Epochs alternate between
the two so that the shared machine's noise hits both alike; the script prints the median
seconds per epoch of each, their ratio (target <= 1.05) and images per second.

    python benchmarks/bench_trainer.py --dataset mnist5k --model vgg --epochs 5 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from dicelab.config import load_config
from dicelab.optim import build_optimizer
from dicelab.train import Trainer


def hand_epoch(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
    precision: torch.dtype | None = None,
) -> None:
    """The loop a PyTorch user would write by hand: no metrics, no checks (autocast to
    ``precision`` around the forward pass and loss when given)."""
    model.train()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        x = x_all[idx].float().div_(255.0)
        with torch.autocast("cpu", dtype=precision) if precision else nullcontext():
            loss = F.cross_entropy(model(x), y_all[idx], reduction="sum")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default="vgg")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per contestant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a dicelab setting (train.precision=bf16, train.channels_last=false, ...); the "
        "hand-written loop gets the same memory format (a copy of the model) and precision",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = load_config(
        overrides=[
            f"data.name={args.dataset}",
            f"model.name={args.model}",
            "data.split=final",
            "device=cpu",
            f"train.epochs={args.epochs + 1}",
            *args.set,
        ]
    )
    trainer = Trainer(config)
    hand_model = copy.deepcopy(trainer.model)
    hand_opt = build_optimizer(config.optimizer, hand_model)
    train = trainer.data.train
    gen = torch.Generator().manual_seed(0)
    batch_size = config.train.batch_size
    precision = trainer.autocast_dtype

    # One untimed warm-up epoch each (allocator, kernels).
    hand_epoch(
        hand_model,
        hand_opt,
        train.x,
        train.y,
        torch.randperm(len(train), generator=gen),
        batch_size,
        precision,
    )
    trainer.train_epoch()

    hand_times: list[float] = []
    ours_times: list[float] = []
    for _ in range(args.epochs):
        order = torch.randperm(len(train), generator=gen)
        start = time.perf_counter()
        hand_epoch(hand_model, hand_opt, train.x, train.y, order, batch_size, precision)
        hand_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        trainer.train_epoch()
        ours_times.append(time.perf_counter() - start)

    hand = statistics.median(hand_times)
    ours = statistics.median(ours_times)
    n = len(train)
    print(
        f"{args.model} on {args.dataset} ({n} images/epoch, batch {batch_size}, "
        f"{args.threads} threads, torch {torch.__version__}; channels_last "
        f"{trainer.channels_last}, precision {config.train.precision})"
    )
    print(f"hand-written loop : {hand:7.3f} s/epoch  {n / hand:8.0f} img/s")
    print(f"dicelab Trainer   : {ours:7.3f} s/epoch  {n / ours:8.0f} img/s")
    print(f"ratio dicelab/hand: {ours / hand:.3f}  (median of {args.epochs} alternating epochs)")


if __name__ == "__main__":
    main()
