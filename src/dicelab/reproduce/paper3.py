"""Paper 3 (arXiv 2404.00357): SGD, SAM, RWP, m-RWP, ARWP and m-ARWP with repeats, then the
Hessian and a 1-D loss landscape of each method's seed-0 model.

The ``full`` recipe is the authors' scripts (``nblt/mARWP``: ``train_rwp_cos.py``,
``train_marwp.py``, ``utils.py`` and ``run_mrwp.sh`` at commit f12df73, ``scripts/run_rwp.sh``
at d739394). Every value, with its file and line, is listed in docs/FIDELITY.md:

- SGD with momentum 0.9 (``train_rwp_cos.py`` L59, L245-247; ``train_marwp.py`` L216), lr
  0.1, weight decay 1e-3, batch 256, 200 epochs (``scripts/run_rwp.sh`` L9-12, ``run_mrwp.sh``
  L9-12), the batch-mean cross-entropy (``nn.CrossEntropyLoss()``, ``train_rwp_cos.py`` L239,
  ``train_marwp.py`` L210);
- the lr annealed by a cosine to 0 after every update (``train_rwp_cos.py`` L161-177, L257,
  L366) for SGD, SAM, RWP and ARWP; the mixed methods double the epochs
  (``train_marwp.py`` L219) and step ``CosineAnnealingLR(T_max=2·epochs)`` once per epoch
  (L224, L245), so every method makes the same number of updates;
- random crop 32 with padding 4, horizontal flip, per-channel normalisation with the CIFAR-10
  statistics on both datasets, Cutout 16 with p = 0.5 (``utils.py`` L57-73, L265-303,
  ``--cutout`` in both scripts);
- RWP and ARWP: σ CosineInc from σ₀ = 0.001 with inc = 10, ARWP η = 0.1, β = 0.99
  (``scripts/run_rwp.sh`` L14, L16, L21, L23; ``train_rwp_cos.py`` L271, L365); m-RWP and
  m-ARWP: a constant σ = 0.015, λ = 0.5, η = 0.1, β = 0.99 (``run_mrwp.sh`` L13-16, no
  ``--incstd``);
- SAM: ρ = 0.05. The authors' SAM runs are not in the released code (their ρ came from a grid
  search that is not published); 0.05 is SAM's reference value (davda54/sam).

The ``full`` scale trains ResNet-18 and WideResNet-16-8 on CIFAR-10 and CIFAR-100 (models the
scripts list; ``scripts/run_rwp.sh`` L7, ``run_mrwp.sh`` L7): four benchmarks. The ``cpu``
scale is the same optimizer recipe on mnist1d with the 1-D CNN and the MLP, a task with
headroom (the SGD baseline ends far below 100 %), so a difference between methods can show.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicelab import _atomic
from dicelab.config import RunConfig, flatten, load_config, to_dict
from dicelab.reproduce._common import MNIST5K_NARROW, TRAIN_IMAGES, cost_lines

METHODS = ("none", "sam", "rwp", "mrwp", "arwp", "marwp")

#: Methods that take two batches per update (the clean one, then the perturbed one) and so
#: get twice the epochs: every method makes the same number of updates (``train_marwp.py``
#: L219).
MIXED = ("mrwp", "marwp")

#: Methods that take two forward/backward passes per batch (the ascent step, then the update).
TWO_PASSES = ("sam", "asam")

#: The authors' settings of each method, laid over a scale's shared settings (sources in the
#: module docs). The mixed methods' cosine steps once per epoch, as ``train_marwp.py`` does.
AUTHORS_METHODS: dict[str, tuple[str, ...]] = {
    "none": (),
    "sam": ("optimizer.rho=0.05",),
    "rwp": ("optimizer.sigma=0.001", "optimizer.sigma_schedule=cosine", "optimizer.sigma_inc=10"),
    "arwp": ("optimizer.sigma=0.001", "optimizer.sigma_schedule=cosine", "optimizer.sigma_inc=10",
             "optimizer.eta=0.1", "optimizer.beta=0.99"),
    "mrwp": ("optimizer.sigma=0.015", "optimizer.lam=0.5", "schedule.interval=epoch"),
    "marwp": ("optimizer.sigma=0.015", "optimizer.lam=0.5", "optimizer.eta=0.1",
              "optimizer.beta=0.99", "schedule.interval=epoch"),
}  # fmt: skip

#: The authors' training: SGD momentum 0.9, lr 0.1 annealed by a cosine to 0, weight
#: decay 1e-3, the batch-mean loss; a new order of the training set every epoch (their
#: ``DataLoader(..., shuffle=True)``, ``utils.py`` L279, L302).
_AUTHORS_TRAINING = (
    "techniques.shuffle=true",
    "optimizer.name=momentum",
    "optimizer.momentum=0.9",
    "optimizer.lr=0.1",
    "optimizer.weight_decay=0.001",
    "schedule.name=cosine",
    "schedule.min_lr=0",
    "train.reduction=mean",
)

#: The authors' CIFAR augmentation, in their order (flip, crop, normalise, Cutout), with the
#: CIFAR-10 statistics on CIFAR-100 too (``utils.py`` L269, L292).
_AUTHORS_CIFAR_DATA = (
    "data.download=true",
    "techniques.flip.mode=horizontal",
    "techniques.random_crop.padding=4",
    "techniques.normalize.preset=cifar10",
    "techniques.cutout.size=16",
    "techniques.cutout.p=0.5",
)


@dataclass(frozen=True)
class Paper3:
    """One scale of the paper-3 pipeline.

    Attributes:
        settings: configuration settings shared by every run.
        epochs: epochs of a one-batch-per-update method (the mixed methods get twice).
        seeds: runs per method (seeds ``seed``, ``seed + 1``, ...).
        methods: the ``optimizer.perturbation`` of each compared method.
        hessian_examples: training examples the Hessian and the landscape are computed on.
        trace_samples: Hutchinson samples of the Hessian trace.
        hessian_iterations: the most Lanczos steps for the top eigenvalue.
        landscape_steps: points of the 1-D loss landscape.
        benchmarks: name → settings of each model and dataset (laid over ``settings``); runs
            are named ``<benchmark>-<method>``. Empty: one benchmark, runs named by method.
        method_settings: method → settings laid over the benchmark's (the authors' σ
            schedules, mixing weights, SAM ρ).
    """

    settings: tuple[str, ...]
    epochs: int
    seeds: int
    methods: tuple[str, ...] = METHODS
    hessian_examples: int = 1000
    trace_samples: int = 30
    hessian_iterations: int = 100
    landscape_steps: int = 21
    benchmarks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    method_settings: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def runs(self) -> list[tuple[str, str, str]]:
        """``(run name, benchmark, method)`` of every configuration, benchmark by benchmark."""
        if not self.benchmarks:
            return [(method, "", method) for method in self.methods]
        return [
            (f"{bench}-{method}", bench, method)
            for bench in self.benchmarks
            for method in self.methods
        ]


_PAPER3_OPTIMIZER = ("optimizer.name=momentum", "optimizer.lr=0.05", "train.reduction=mean")
PAPER3_SCALES = {
    "smoke": Paper3((*MNIST5K_NARROW, *_PAPER3_OPTIMIZER), 2, 2, hessian_examples=500,
                    trace_samples=10, landscape_steps=11),
    # 100 epochs of 32 batches of 128: the SGD baseline ends at 0.940 (CNN) and 0.661 (MLP)
    # test accuracy, both short of their ceilings (docs/REPRODUCTION.md).
    "cpu": Paper3(
        ("data.name=mnist1d", *_AUTHORS_TRAINING, "train.batch_size=128"), 100, 5,
        benchmarks={"cnn1d": ("model.name=cnn1d",), "mlp1d": ("model.name=mlp1d",)},
        method_settings=AUTHORS_METHODS,
    ),
    "full": Paper3(
        (*_AUTHORS_TRAINING, *_AUTHORS_CIFAR_DATA, "train.batch_size=256"),
        200, 3, hessian_examples=5000, trace_samples=100, landscape_steps=51,
        benchmarks={
            "cifar10-resnet18": ("data.name=cifar10", "model.name=resnet18"),
            "cifar100-resnet18": ("data.name=cifar100", "model.name=resnet18"),
            "cifar10-wrn16-8": ("data.name=cifar10", "model.name=wideresnet", "model.depth=16",
                                "model.widen=8"),
            "cifar100-wrn16-8": ("data.name=cifar100", "model.name=wideresnet",
                                 "model.depth=16", "model.widen=8"),
        },
        method_settings=AUTHORS_METHODS,
    ),
}  # fmt: skip


def method_configs(scale: Paper3) -> dict[str, RunConfig]:
    """The run configuration of each run of ``scale`` (:meth:`Paper3.runs`). The mixed
    methods take two batches per update, so they get twice the epochs: every method makes
    the same number of updates. Every run trains on the full training set (``data.split``
    final, as :func:`dicelab.tune.evaluate.retrain` runs it)."""
    configs = {}
    for name, bench, method in scale.runs():
        epochs = scale.epochs * (2 if method in MIXED else 1)
        settings = [
            *scale.settings,
            *scale.benchmarks.get(bench, ()),
            *scale.method_settings.get(method, ()),
            f"optimizer.perturbation={method}",
            f"train.epochs={epochs}",
            "data.split=final",
        ]
        configs[name] = load_config(None, settings)
    return configs


def run(scale: Paper3, folder: Path, workers: int, log: Callable[[str], None]) -> Path:
    """Train every method with repeats, then the curvature of each, then the report.

    ``comparison.json`` holds one row per run name: the test accuracies over the seeds, their
    mean and std, the updates, and Welch's t-test p-values against SGD (``none``) and against
    SAM of the same benchmark. A run that diverged (NaN or infinite loss or weights) is left
    out of these: the row counts its ``runs`` and lists the ``diverged`` seeds with the
    reason, its ``updates`` are those of a completed run (None when every run diverged), and
    a method whose seed-0 run diverged gets no curvature (a log line says so).
    """
    from dicelab.reports.html import build_report
    from dicelab.tune.evaluate import retrain

    configs = method_configs(scale)
    log(f"1/3 train: {len(configs)} configurations x {scale.seeds} seeds")
    results = retrain(
        configs, folder / "runs", epochs=None, repeats=scale.seeds, workers=workers, say=log
    )
    rows = []
    for name, bench, method in scale.runs():
        got = results[name]
        rows.append({"method": name, "benchmark": bench, "optimizer": method,
                     **{k: got[k] for k in ("mean", "std", "test_accuracy", "runs", "diverged")},
                     "updates": _updates(folder / "runs", name, got)})  # fmt: skip
    add_welch_p(rows)
    for line in comparison_lines(rows):
        log(line)
    description = (
        f"Test accuracy over {scale.seeds} seeds; {scale.epochs} epochs "
        f"({2 * scale.epochs} for the mixed methods, the same number of updates). "
        "p_vs_sgd, p_vs_sam: Welch's t-test against SGD (none) and SAM of the same benchmark."
    )
    _atomic.write_json(folder / "comparison.json", {"description": description, "rows": rows})
    log("2/3 Hessian and loss landscape of each seed-0 model")
    for name, config in configs.items():
        if any(d["seed"] == config.seed for d in results[name]["diverged"]):
            log(f"    {name}: no Hessian or landscape, its seed-{config.seed} run diverged")
            continue
        _curvature(folder, name, folder / "runs" / f"{name}-seed{config.seed}", scale)
    log("3/3 report")
    return build_report(folder, title="Reproduction: paper 3")


def _updates(runs: Path, name: str, got: dict[str, Any]) -> int | None:
    """The updates of a completed run of ``name`` (its first completed seed's result.json): a
    diverged run's result.json counts only the updates before it diverged. None when every
    run diverged."""
    diverged = {d["seed"] for d in got["diverged"]}
    completed = [seed for seed in got["seeds"] if seed not in diverged]
    if not completed:
        return None
    result = runs / f"{name}-seed{completed[0]}" / "result.json"
    return int(json.loads(result.read_text())["updates"])


def add_welch_p(rows: list[dict[str, Any]]) -> None:
    """Add ``p_vs_sgd`` and ``p_vs_sam`` to each row: the two-sided p-value of Welch's t-test
    (unequal variances) of its test accuracies against those of ``none`` and of ``sam`` in
    the same benchmark; ``None`` for the reference itself, when the reference was not run,
    or when the test is undefined (fewer than two seeds, or no spread in either sample).
    The accuracies are those of the completed runs: a diverged run is not among them, so a
    method with fewer than two completed runs on either side gets None."""
    from scipy.stats import ttest_ind

    for row in rows:
        for key, reference in (("p_vs_sgd", "none"), ("p_vs_sam", "sam")):
            other = next(
                (r for r in rows if r["benchmark"] == row["benchmark"]
                 and r["optimizer"] == reference),
                None,
            )  # fmt: skip
            p = None
            if other is not None and other is not row:
                ours, theirs = row["test_accuracy"], other["test_accuracy"]
                spread = len(set(ours)) > 1 or len(set(theirs)) > 1
                if min(len(ours), len(theirs)) > 1 and spread:
                    p = float(ttest_ind(ours, theirs, equal_var=False).pvalue)
            row[key] = p


def comparison_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The comparison as log lines: mean ± std per run name (over its completed runs, with
    the share that diverged) and both p-values, then one line per run name with diverged
    runs naming their seeds."""
    from dicelab.tune.evaluate import accuracy_text, divergence_note

    def shown(p: float | None) -> str:
        return "-" if p is None else f"{p:.3g}"

    lines = [f"{'run':<20} {'test accuracy':>17} {'p vs SGD':>9} {'p vs SAM':>9}"]
    for row in rows:
        lines.append(
            f"{row['method']:<20} {accuracy_text(row):>17} {shown(row['p_vs_sgd']):>9} "
            f"{shown(row['p_vs_sam']):>9}"
        )
    notes = (divergence_note(row["method"], row) for row in rows)
    lines += [f"diverged, left out of the means: {note}" for note in notes if note is not None]
    return lines


#: The fields of a run configuration a dry-run prints for every method; each perturbation
#: adds its own (:data:`_METHOD_FIELDS`), and every technique that is on adds its settings.
_COMMON_FIELDS = (
    "data.name",
    "data.split",
    "data.train_limit",
    "model.name",
    "model.batchnorm",
    "optimizer.name",
    "optimizer.momentum",
    "optimizer.nesterov",
    "optimizer.lr",
    "optimizer.weight_decay",
    "optimizer.decay_exclude",
    "optimizer.perturbation",
    "schedule.name",
    "schedule.interval",
    "schedule.warmup",
    "schedule.min_lr",
    "train.epochs",
    "train.batch_size",
    "train.reduction",
    "train.recalibrate_bn",
    "train.precision",
)
_RWP_FIELDS = ("optimizer.sigma", "optimizer.sigma_schedule", "optimizer.sigma_inc")
_ADAPTIVE_FIELDS = ("optimizer.eta", "optimizer.beta")
_MIXED_FIELDS = ("optimizer.lam", "optimizer.mix_batches")
_METHOD_FIELDS: dict[str, tuple[str, ...]] = {
    "none": (),
    "sam": ("optimizer.rho",),
    "asam": ("optimizer.rho",),
    "rwp": _RWP_FIELDS,
    "arwp": (*_RWP_FIELDS, *_ADAPTIVE_FIELDS),
    "mrwp": (*_RWP_FIELDS, *_MIXED_FIELDS),
    "marwp": (*_RWP_FIELDS, *_ADAPTIVE_FIELDS, *_MIXED_FIELDS),
}


def recipe_fields(config: RunConfig) -> dict[str, Any]:
    """The settings of ``config`` a dry-run prints, by dotted key: :data:`_COMMON_FIELDS`,
    the model's options, the fields of its perturbation and every technique's settings."""
    flat = flatten(to_dict(config))
    keys = [
        *_COMMON_FIELDS,
        *sorted(f"model.{name}" for name in config.model.options),
        *_METHOD_FIELDS[config.optimizer.perturbation],
        *sorted(key for key in flat if key.startswith("techniques.")),
    ]
    return {key: flat[key] for key in keys}


def _value(value: Any) -> str:
    """A setting as the dry-run writes it: strings bare, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def train_images(config: RunConfig) -> int:
    """Training examples of a run under ``data.split`` and ``data.train_limit``, from the
    datasets' known sizes (:data:`dicelab.reproduce._common.TRAIN_IMAGES`): nothing is read,
    generated or downloaded."""
    data = config.data
    total = TRAIN_IMAGES[data.name]
    if data.split == "search":
        total -= round(total * data.val_fraction)
    return min(total, data.train_limit or total)


def dry_run(scale: Paper3) -> str:
    """The resolved protocol of every run of ``scale`` and its estimated cost; nothing is
    trained or downloaded.

    One block per run name (``[name]``): its model, dataset, training images, batches per
    epoch and updates (``epochs × ceil(images / batch)``, halved for the mixed methods, which
    spend two batches per update), its seeds, then every setting that matters as
    ``key=value`` (:func:`recipe_fields`). Then the cost of each benchmark: the images passed
    forward and backward (twice per batch for SAM), over every seed, priced by
    :func:`dicelab.reproduce._common.cost_lines`.
    """
    configs = method_configs(scale)
    names = list(configs)
    benchmarks = list(scale.benchmarks) or [""]
    lines = [
        "paper 3 (arXiv 2404.00357): train every method with repeats, then the Hessian and a "
        "1-D loss landscape of each seed-0 model, then the report",
        f"{len(benchmarks)} benchmark(s) x {len(scale.methods)} methods x {scale.seeds} seeds "
        f"= {len(names) * scale.seeds} runs; nothing is trained or downloaded by a dry-run",
        f"curvature: Hessian on {scale.hessian_examples} training examples, "
        f"{scale.trace_samples} trace samples; landscape of {scale.landscape_steps} points",
    ]
    passes: dict[str, int] = {}
    for name, bench, method in scale.runs():
        config = configs[name]
        images = train_images(config)
        per_epoch = math.ceil(images / config.train.batch_size)
        batches = config.train.epochs * per_epoch
        mixed = method in MIXED and config.optimizer.mix_batches == "consecutive"
        updates = batches // 2 if mixed else batches
        how = f"{batches:,} batches / 2 batches per update" if mixed else f"{batches:,} batches"
        seeds = ", ".join(str(config.seed + r) for r in range(scale.seeds))
        lines += [
            "",
            f"[{name}]",
            f"  {config.model.name} on {config.data.name}: {images:,} training images, "
            f"{per_epoch:,} batches per epoch, {config.train.epochs} epochs, "
            f"{updates:,} updates ({how}); seeds {seeds}",
            *(f"  {key}={_value(value)}" for key, value in recipe_fields(config).items()),
        ]
        factor = 2 if method in TWO_PASSES else 1
        passes[bench] = passes.get(bench, 0) + factor * config.train.epochs * images
    lines += ["", "estimated cost (images through forward and backward, every seed):"]
    for bench in benchmarks:
        config = configs[next(n for n, b, _ in scale.runs() if b == bench)]
        total = passes[bench] * scale.seeds
        label = bench or config.data.name
        lines.append(f"{label}: {total:,} images ({config.model.name} on {config.data.name})")
        lines += cost_lines(config.model.name, config.data.name, total)
    return "\n".join(lines)


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
        trained.model,
        F.cross_entropy,
        batches,
        top_k=1,
        trace_samples=scale.trace_samples,
        iterations=scale.hessian_iterations,
    )
    _atomic.write_json(hessian_path, report.to_dict())
    direction = random_direction(trained.model, seed=0)
    landscape = slice_1d(
        trained.model, F.cross_entropy, batches, direction, steps=scale.landscape_steps
    )
    _atomic.write_json(landscape_path, landscape.to_dict())
