"""Paper 3 (arXiv 2404.00357): SGD, SAM, RWP, m-RWP, ARWP and m-ARWP with repeats, then the
Hessian and a 1-D loss landscape of each method's seed-0 model."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dicelab import _atomic
from dicelab.config import RunConfig, load_config
from dicelab.reproduce._common import MNIST5K_NARROW


@dataclass(frozen=True)
class Paper3:
    """One scale of the paper-3 pipeline."""

    settings: tuple[str, ...]
    epochs: int
    seeds: int
    methods: tuple[str, ...] = ("none", "sam", "rwp", "mrwp", "arwp", "marwp")
    hessian_examples: int = 1000
    trace_samples: int = 30
    landscape_steps: int = 21
    extra: dict[str, str] = field(default_factory=dict)


_PAPER3_OPTIMIZER = ("optimizer.name=momentum", "optimizer.lr=0.05", "train.reduction=mean")
PAPER3_SCALES = {
    "smoke": Paper3((*MNIST5K_NARROW, *_PAPER3_OPTIMIZER), 2, 2, hessian_examples=500,
                    trace_samples=10, landscape_steps=11),
    "cpu": Paper3(("data.name=mnist5k", "model.name=vgg", *_PAPER3_OPTIMIZER), 10, 3),
    "full": Paper3(
        ("data.name=cifar10", "data.download=true", "model.name=resnet18",
         "optimizer.name=momentum", "optimizer.lr=0.1", "optimizer.weight_decay=0.001",
         "train.reduction=mean", "train.batch_size=256"),
        200, 3, hessian_examples=5000, trace_samples=100, landscape_steps=51,
    ),
}  # fmt: skip


def method_configs(scale: Paper3) -> dict[str, RunConfig]:
    """The run configuration of each method of ``scale``. The mixed methods take two batches
    per update, so they get twice the epochs: every method makes the same number of updates."""
    doubled = ("mrwp", "marwp")
    configs = {}
    for method in scale.methods:
        epochs = scale.epochs * (2 if method in doubled else 1)
        settings = [*scale.settings, f"optimizer.perturbation={method}", f"train.epochs={epochs}"]
        configs[method] = load_config(None, settings)
    return configs


def run(scale: Paper3, folder: Path, workers: int, log: Callable[[str], None]) -> Path:
    """Train every method with repeats, then the curvature of each, then the report."""
    from dicelab.reports.html import build_report
    from dicelab.tune.evaluate import retrain

    configs = method_configs(scale)
    log(f"1/3 train: {len(configs)} optimizers x {scale.seeds} seeds")
    results = retrain(
        configs, folder / "runs", epochs=None, repeats=scale.seeds, workers=workers, say=log
    )
    rows = []
    for method, got in results.items():
        run = folder / "runs" / f"{method}-seed{configs[method].seed}"
        updates = json.loads((run / "result.json").read_text())["updates"]
        rows.append({"method": method, **{k: got[k] for k in ("mean", "std")},
                     "test_accuracy": got["test_accuracy"], "updates": updates})  # fmt: skip
    description = (
        f"Test accuracy over {scale.seeds} seeds; {scale.epochs} epochs "
        f"({2 * scale.epochs} for the mixed methods, the same number of updates)."
    )
    _atomic.write_json(folder / "comparison.json", {"description": description, "rows": rows})
    log("2/3 Hessian and loss landscape of each seed-0 model")
    for method, config in configs.items():
        _curvature(folder, method, folder / "runs" / f"{method}-seed{config.seed}", scale)
    log("3/3 report")
    return build_report(folder, title="Reproduction: paper 3")


def _curvature(folder: Path, method: str, run: Path, scale: Paper3) -> None:
    """The Hessian report and a 1-D landscape of one trained run (skipped when present)."""
    import torch.nn.functional as F

    from dicelab.analysis.hessian import hessian_report
    from dicelab.analysis.landscape import random_direction, slice_1d
    from dicelab.analysis.runs import load_trained

    hessian_path = folder / "hessian" / f"{method}.json"
    landscape_path = folder / "landscape" / f"{method}.json"
    if hessian_path.is_file() and landscape_path.is_file():
        return
    trained = load_trained(run)
    batches = trained.batches("train", examples=scale.hessian_examples)
    report = hessian_report(
        trained.model, F.cross_entropy, batches, top_k=1, trace_samples=scale.trace_samples
    )
    _atomic.write_json(hessian_path, report.to_dict())
    direction = random_direction(trained.model, seed=0)
    landscape = slice_1d(
        trained.model, F.cross_entropy, batches, direction, steps=scale.landscape_steps
    )
    _atomic.write_json(landscape_path, landscape.to_dict())
