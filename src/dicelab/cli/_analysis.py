"""The ``landscape``, ``hessian`` and ``reproduce`` commands."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from dicelab.exceptions import ConfigError


def add_reproduce(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paper", help="paper1 (randomness search) or paper3 (RWP optimizers)")
    parser.add_argument(
        "--scale", default="smoke", help="smoke (minutes), cpu (about an hour), full (GPUs)"
    )
    parser.add_argument("--out", help="results folder (default: runs/reproduce-PAPER-SCALE)")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes")
    parser.add_argument("--storage", help="paper1: database URL shared by the workers")
    parser.add_argument("--seed", type=int, default=0, help="paper1: the search's seed (0)")
    parser.add_argument(
        "--benchmark",
        help="paper1 --scale full: mnist, fashion-mnist, cifar10 (default) or cifar100",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved protocol and its estimated cost; train nothing",
    )


def run_reproduce(args: argparse.Namespace) -> int:
    import optuna

    from dicelab.cli import folder_argument
    from dicelab.reproduce import dry_run, reproduce

    if args.dry_run:
        print(dry_run(args.paper, args.scale, args.benchmark))
        return 0
    folder_argument("--out", args.out)  # refuses an empty --out
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    path = reproduce(
        args.paper,
        args.scale,
        out=args.out,
        workers=args.workers,
        storage=args.storage,
        seed=args.seed,
        benchmark=args.benchmark,
    )
    print(f"report written to {path}")
    return 0


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="a finished run folder (config.yaml, model.pt)")
    parser.add_argument("--out", help="results folder (default: the run folder)")
    parser.add_argument("--name", help="file name of the result (default: the run's name)")
    parser.add_argument(
        "--examples", type=int, default=1000, help="training examples used (default: 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random directions / probes")


def _destination(args: argparse.Namespace, kind: str) -> Path:
    """Where a landscape or Hessian result goes: ``OUT/KIND/NAME.json``."""
    from dicelab.cli import folder_argument

    if args.examples < 1:
        raise ConfigError("--examples", args.examples, "must be >= 1")
    folder = (folder_argument("--out", args.out) or args.run) / kind
    return (
        folder
        / f"{plain_name(args.name) if args.name is not None else args.run.resolve().name}.json"
    )


def plain_name(name: str) -> str:
    """``name`` if it is a plain file name: no folder part, so a result cannot be written
    outside its results folder (``--name ../../x``)."""
    if (
        not name.strip()
        or name in (".", "..")
        or "/" in name
        or (os.sep != "/" and os.sep in name)
        or (os.altsep is not None and os.altsep in name)
        or "\0" in name
    ):
        raise ConfigError(
            "--name",
            name,
            "must be a plain file name, without folders",
            hint="Use --out to choose the folder.",
        )
    return name


def add_hessian(parser: argparse.ArgumentParser) -> None:
    _add_run_arguments(parser)
    parser.add_argument("--top-k", type=int, default=1, help="eigenvalues (default: 1)")
    parser.add_argument("--trace-samples", type=int, default=50, help="Hutchinson probes")
    parser.add_argument("--density", action="store_true", help="also the spectral density")


def run_hessian(args: argparse.Namespace) -> int:
    import torch.nn.functional as F

    from dicelab import _atomic
    from dicelab.analysis.hessian import hessian_report
    from dicelab.analysis.runs import load_trained

    path = _destination(args, "hessian")
    trained = load_trained(args.run)
    report = hessian_report(
        trained.model,
        F.cross_entropy,
        trained.batches("train", examples=args.examples),
        top_k=args.top_k,
        trace_samples=args.trace_samples,
        density=args.density,
        seed=args.seed,
    )
    _atomic.write_json(path, report.to_dict())
    print(json.dumps(report.to_dict(), indent=2)[:2000])
    print(f"written to {path}")
    return 0


def add_landscape(parser: argparse.ArgumentParser) -> None:
    _add_run_arguments(parser)
    parser.add_argument("--dims", type=int, default=1, choices=(1, 2), help="1-D or 2-D slice")
    parser.add_argument("--steps", type=int, default=21, help="points per axis (default: 21)")
    parser.add_argument("--span", type=float, default=1.0, help="from -span to +span")
    parser.add_argument(
        "--towards", type=Path, help="a second run folder: interpolate from RUN to it instead"
    )


def run_landscape(args: argparse.Namespace) -> int:
    import torch.nn.functional as F

    from dicelab import _atomic
    from dicelab.analysis import landscape as ls
    from dicelab.analysis.runs import load_trained
    from dicelab.train.trainer import FINAL_WEIGHTS, load_checkpoint

    if args.steps < 2:
        raise ConfigError("--steps", args.steps, "must be >= 2")
    if args.span <= 0:
        raise ConfigError("--span", args.span, "must be > 0")
    path = _destination(args, "landscape")
    trained = load_trained(args.run)
    batches = trained.batches("train", examples=args.examples)
    model = trained.model
    span = (-args.span, args.span)
    result: ls.Landscape1D | ls.Landscape2D
    if args.towards is not None:
        weights = args.towards / FINAL_WEIGHTS
        if not weights.is_file():
            raise ConfigError("--towards", str(args.towards), f"holds no {FINAL_WEIGHTS}")
        state_b = load_checkpoint(weights, "cpu")
        result = ls.interpolate(
            model.state_dict(), state_b, model, F.cross_entropy, batches, steps=args.steps
        )
    elif args.dims == 1:
        direction = ls.random_direction(model, seed=args.seed)
        result = ls.slice_1d(
            model, F.cross_entropy, batches, direction, steps=args.steps, span=span
        )
    else:
        d1 = ls.random_direction(model, seed=args.seed)
        d2 = ls.random_direction(model, seed=args.seed + 1)
        result = ls.slice_2d(model, F.cross_entropy, batches, d1, d2, steps=args.steps, span=span)
    _atomic.write_json(path, result.to_dict())
    figure = ls.plot_2d(result) if isinstance(result, ls.Landscape2D) else ls.plot_1d(result)
    figure.savefig(path.with_suffix(".png"), dpi=100, bbox_inches="tight")
    print(f"written to {path} and {path.with_suffix('.png')}")
    return 0
