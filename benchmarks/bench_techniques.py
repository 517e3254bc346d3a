"""Per-technique cost: seconds per epoch with one technique on (mid-range) vs. all off.

For each technique, a trainer with only that technique at a typical setting
(:func:`dicelab.techniques.mid_range`) and a trainer with none alternate epochs on the same
data, model and optimizer; the table gives the ratio of median epoch times (targets: <= 1.10
for every non-augmentation technique, <= 1.30 for the whole augmentation set together).

Activation noise and DropConnect draw one random value per activation, and the CPU generator
bounds them. For these, a third contestant draws, with ``torch.randn``/``torch.rand`` alone,
as many values as the technique perturbs in one epoch (one per entry of every input of its
sites, recorded with hooks in a training epoch), alternating with the other two; the second
table gives the technique's overhead (on − off) over that draw time (target <= 1.10: at most
10% of work beyond drawing the values). They draw with dicelab's fused kernels where a C
compiler is available (``dicelab.techniques._fused``); a fourth contestant trains them with
torch's generator instead (the fallback), to show what the kernels save.

    python benchmarks/bench_techniques.py --dataset mnist5k --model vgg --limit 1024 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from dicelab import paper_space
from dicelab.config import apply_overrides, from_dict
from dicelab.techniques import _fused as fused
from dicelab.techniques import list_techniques, mid_range
from dicelab.techniques._sites import hidden_weight_layers
from dicelab.train import Trainer

AUGMENTATIONS = ("flip", "random_crop", "rotation", "zoom", "translation", "contrast", "cutout")
#: Techniques bounded by the generator: where they draw (one value per input entry) and how.
DRAW_BOUND: dict[str, tuple[Callable[[nn.Module], list[nn.Module]], Callable[..., torch.Tensor]]]
DRAW_BOUND = {
    "activation_noise": (
        lambda model: [m for m in model.modules() if isinstance(m, nn.ReLU)],
        torch.randn,
    ),
    "dropconnect": (hidden_weight_layers, torch.rand),
}

Draw = tuple[Callable[..., torch.Tensor], torch.Size, torch.dtype]

#: Paper 1's 15 optional techniques (those its sparse start switches on at random), all on.
PAPER_OPTIONAL = tuple(str(paper_space.GENES[i].technique) for i in paper_space.OPTIONAL)
PAPER_ROW = "paper 1's 15 optional techniques"


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


def recorded_draws(run: Trainer, names: list[str]) -> list[Draw]:
    """Train one epoch of ``run`` and return one draw per tensor that the draw-bound
    techniques ``names`` perturb (the inputs of their sites): ``torch.randn`` for noise,
    ``torch.rand`` for masks, with the tensor's shape and dtype. Replaying them draws the same
    number of values."""
    draws: list[Draw] = []

    def recorder(fn: Callable[..., torch.Tensor]) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def record(module: nn.Module, args: tuple[Any, ...]) -> None:
            draws.append((fn, args[0].shape, args[0].dtype))

        return record

    handles = [
        site.register_forward_pre_hook(recorder(DRAW_BOUND[name][1]))
        for name in names
        for site in DRAW_BOUND[name][0](run.model)
    ]
    try:
        run.train_epoch()
    finally:
        for handle in handles:
            handle.remove()
    return draws


@contextlib.contextmanager
def torch_draws() -> Iterator[None]:
    """Activation noise and DropConnect draw with torch's generator inside (the fallback of
    the fused kernels)."""
    os.environ["DICELAB_FUSED_DRAWS"] = "0"
    fused.library.cache_clear()
    try:
        yield
    finally:
        del os.environ["DICELAB_FUSED_DRAWS"]
        fused.library.cache_clear()


def compare(
    args: argparse.Namespace, techniques: dict[str, Any]
) -> tuple[float, float, float, float]:
    """Median seconds per epoch: (all off, with ``techniques``, the draws of the draw-bound
    ones among them alone, with ``techniques`` drawing with torch instead of the fused
    kernels; the last two nan when there are no draw-bound ones), contestants alternating."""
    off, on = trainer(args, {}), trainer(args, techniques)
    off.train_epoch()  # warm-up
    bound = [name for name in techniques if name in DRAW_BOUND]
    with_draws = bool(bound)
    draws = recorded_draws(on, bound) if with_draws else []  # also the warm-up of ``on``
    if not with_draws:
        on.train_epoch()
    generator = torch.Generator().manual_seed(0)

    def replay() -> None:
        for fn, shape, dtype in draws:
            fn(shape, generator=generator, dtype=dtype)

    on_torch = trainer(args, techniques)

    def torch_route() -> None:
        with torch_draws():
            on_torch.train_epoch()

    contestants = [off.train_epoch, on.train_epoch]
    if with_draws:
        torch_route()  # warm-up
        contestants += [replay, torch_route]
    times: list[list[float]] = [[] for _ in contestants]
    for _ in range(args.repeats):
        for spent, contestant in zip(times, contestants, strict=True):
            start = time.perf_counter()
            contestant()
            spent.append(time.perf_counter() - start)
    medians = [statistics.median(spent) for spent in times] + [float("nan")] * 2
    return medians[0], medians[1], medians[2], medians[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default="vgg")
    parser.add_argument("--limit", type=int, default=1024, help="training images per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per contestant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="just these techniques")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows: list[tuple[str, str, float, float, float, float]] = []
    for cls in list_techniques():
        if args.only and cls.name not in args.only:
            continue
        technique = mid_range(cls)
        setting = f"{cls.strength}={getattr(technique, cls.strength)}"
        timed = compare(args, {cls.name: technique.hyperparameters()})
        rows.append((cls.name, setting, *timed))
    classes = {cls.name: cls for cls in list_techniques()}
    if not args.only:
        together = {name: mid_range(classes[name]).hyperparameters() for name in AUGMENTATIONS}
        rows.append(("all augmentations", "+".join(AUGMENTATIONS), *compare(args, together)))
        paper = {name: mid_range(classes[name]).hyperparameters() for name in PAPER_OPTIONAL}
        rows.append((PAPER_ROW, "each at mid-range", *compare(args, paper)))

    print(
        f"{args.model} on {args.dataset}, {args.limit} images/epoch, batch 128, "
        f"{args.threads} threads, median of {args.repeats} alternating epochs"
    )
    print("| technique | setting | off s/epoch | on s/epoch | ratio |")
    print("|---|---|---|---|---|")
    for name, setting, off, on, _, _ in rows:
        print(f"| {name} | {setting} | {off:.3f} | {on:.3f} | {on / off:.3f} |")
    print()
    kernels = "fused kernels" if fused.in_use() else "torch (no C compiler: no fused kernels)"
    print(f"draw-bound techniques draw with: {kernels}")
    print(
        "| draw-bound technique | overhead (on − off) s/epoch | its draws alone s/epoch | ratio "
        "| overhead with torch's draws s/epoch | ratio |"
    )
    print("|---|---|---|---|---|---|")
    for name, _, off, on, draw, slow in rows:
        if name in DRAW_BOUND:
            print(
                f"| {name} | {on - off:.3f} | {draw:.3f} | {(on - off) / draw:.3f} "
                f"| {slow - off:.3f} | {(slow - off) / draw:.3f} |"
            )
    for name, _, off, on, draw, _ in rows:
        if name == PAPER_ROW:
            print(
                f"\n{PAPER_ROW}: {on / off:.2f}x the baseline epoch; the draws of activation "
                f"noise and DropConnect alone take {draw:.3f} s, {draw / (on - off):.0%} of the "
                f"{on - off:.3f} s overhead"
            )


if __name__ == "__main__":
    main()
