"""Paper 1 (arXiv 2404.03992): a PSO search over the 22 genes → ``evaluate`` (best against the
no-randomness baseline, the test-error reduction) → ``ablate`` (by component and by category)
→ ``analyze`` (correlations by optimizer, importance) → ``report``.

The ``full`` recipes follow the authors' code (``Ghaith81/Radnomness_in_Neural_Network``; the
values and their sources are listed in docs/FIDELITY.md):

- search: the multi-fidelity "pso-saga" of ``.ipynb_checkpoints/VGG Fashion-Copy1-checkpoint
  .ipynb``: 100 sparse particles trained for 1 epoch, the best 22 start a 22-particle swarm
  trained for ``epochs_search = 20`` epochs, which stops after ``no_change = 3`` generations
  without a better best or after ``steps = 200`` generations; fitness is the last-epoch
  validation accuracy on the last 20 % of the training set (``training_split=.8``);
- final evaluation: the best and the baseline retrained 5 times (``for _ in range(5)``) on
  the full training set for ``epochs_test`` epochs: 50 for MNIST (``VGG MNIST.ipynb``), 100
  for Fashion-MNIST (the Fashion notebook) and CIFAR-10, 200 for CIFAR-100 (the logs
  ``log/VGG_CIFAR10.xlsx``, ``log/VGG_CIFAR100.xlsx``), with the schedule genes rescaled to
  keep their period in epochs (:func:`dicelab.tune.evaluate.rescale_schedule`);
- ablation: 5 runs per variant at the final epoch count, by component and by category;
- ``faithful``: the authors' choices where dicelab's defaults differ (:data:`FAITHFUL`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicelab.config import RunConfig, load_config, to_dict
from dicelab.reproduce._common import CIFAR10, TRAIN_IMAGES, cost_lines

if TYPE_CHECKING:
    from dicelab.tune.search import SearchOptions

#: The authors' choices where dicelab's defaults differ, as configuration settings: Keras
#: BatchNorm (momentum 0.99, eps 1e-3: ``NeuralNetwork.py`` builds ``BatchNormalization()``
#: with Keras' defaults) and a weight-init gene of exactly 0 giving all-zero kernels
#: (``RandomNormal(0, 0)``). The screening's reset list is a search option
#: (:data:`dicelab.tune.search.AUTHORS_SCREEN_RESET`); the second phase's patience of 3 is
#: each recipe's ``patience``; the asynchronous swarm (``Swarm.py`` re-reads the global best
#: before each particle moves) and its position cache are search options (``update``,
#: ``cache``) set from ``faithful``.
FAITHFUL = ("model.batchnorm=keras", "techniques.weight_init.zeros=true")

#: Ablation variants at most: the best, one per gene, one per technique category (data,
#: model, learning, optimization), the baseline (:func:`dicelab.analysis.ablation.variants`).
_MAX_VARIANTS = 1 + 22 + 4 + 1


@dataclass(frozen=True)
class Paper1:
    """One recipe of the paper-1 pipeline.

    Attributes:
        settings: the base configuration (dataset, model, search epochs) as ``key=value``.
        particles: the swarm's size; generations: its most generations.
        patience: stop after this many generations without a better best (None: never).
        eval_epochs, repeats: the final retraining's epochs and seeds.
        ablate_repeats: seeds per ablation variant (at ``eval_epochs``).
        screen: particles of the 1-epoch screening that seeds the swarm (0: none).
        baseline_start: the first particle starts at the no-randomness baseline.
        faithful: the authors' choices where dicelab's defaults differ (:data:`FAITHFUL`
            and the screening's reset list).
    """

    settings: tuple[str, ...]
    particles: int
    generations: int
    patience: int | None
    eval_epochs: int
    repeats: int
    ablate_repeats: int
    screen: int = 0
    baseline_start: bool = False
    faithful: bool = False

    @property
    def resolved_settings(self) -> tuple[str, ...]:
        """The settings with the faithful ones added when asked."""
        return (*self.settings, *FAITHFUL) if self.faithful else self.settings

    def config(self) -> RunConfig:
        """The search's base configuration (validated; nothing is loaded)."""
        return load_config(None, list(self.resolved_settings))

    def screen_reset(self) -> list[str]:
        """Genes the screening population holds at their baseline beyond the sparse start."""
        from dicelab.tune.search import AUTHORS_SCREEN_RESET

        return list(AUTHORS_SCREEN_RESET) if self.faithful and self.screen else []


# mnist1d with its reference CNN: far from its ceiling after 10 epochs (the no-randomness
# baseline scores about 0.25, SGD with momentum about 0.8), so a 30-trial search has something
# to find, and an epoch takes well under a second. At the smoke scale fitness and evaluation
# train equally long, so the evaluation measures what the search optimised.
_MNIST1D_CNN = ("data.name=mnist1d", "model.name=cnn1d")


def _full(data: tuple[str, ...], eval_epochs: int) -> Paper1:
    """The authors' protocol on one benchmark: 100-particle 1-epoch screening, a 22-particle
    swarm at 20 epochs for at most 200 generations, patience 3, 5 final runs and 5 runs per
    ablation variant at ``eval_epochs``, faithful choices on."""
    return Paper1(
        (*data, "model.name=vgg", "train.epochs=20"),
        particles=22,
        generations=200,
        patience=3,
        eval_epochs=eval_epochs,
        repeats=5,
        ablate_repeats=5,
        screen=100,
        faithful=True,
    )


#: The full protocol per benchmark (the final epochs as the authors'; see the module doc).
PAPER1_FULL = {
    "mnist": _full(("data.name=mnist", "data.download=true"), 50),
    "fashion-mnist": _full(("data.name=fashion-mnist", "data.download=true"), 100),
    "cifar10": _full(tuple(s for s in CIFAR10 if not s.startswith("model.")), 100),
    "cifar100": _full(("data.name=cifar100", "data.download=true"), 200),
}

PAPER1_SCALES = {
    "smoke": Paper1((*_MNIST1D_CNN, "train.epochs=10"), 6, 5, None, 10, 3, 2, baseline_start=True),
    # The CPU benchmark: the authors' two-phase search shape on mnist1d (1-epoch screening of
    # 100 particles, the best 22 at 20 epochs, patience 3), the final runs 2.5 times longer
    # as the authors' MNIST protocol (20 → 50 epochs), 10 seeds for the statistics. 23
    # minutes on one thread, the no-randomness baseline far from the ceiling at 50 epochs
    # (test accuracy 0.68; docs/REPRODUCTION.md).
    "cpu": Paper1((*_MNIST1D_CNN, "train.epochs=20"), 22, 15, 3, 50, 10, 3, screen=100),
    "full": PAPER1_FULL["cifar10"],
}


def _options(
    scale: Paper1, folder: Path, workers: int, storage: str | None, seed: int
) -> SearchOptions:
    """The search options of a recipe (what the study stores and the later steps read)."""
    from dicelab.tune.search import SearchOptions

    return SearchOptions(
        out=str(folder),
        storage=storage,
        study="paper1",
        particles=scale.particles,
        generations=scale.generations,
        patience=scale.patience,
        screen=scale.screen,
        screen_reset=scale.screen_reset(),
        baseline_start=scale.baseline_start,
        update="asynchronous" if scale.faithful else "synchronous",
        cache=scale.faithful,
        seed=seed,
        workers=workers,
        config=to_dict(scale.config()),
    )


def run(
    scale: Paper1,
    folder: Path,
    workers: int,
    storage: str | None,
    seed: int,
    log: Callable[[str], None],
) -> Path:
    """Search, evaluate, ablate, analyze, report; each step resumes."""
    from dicelab.analysis.ablation import ablate
    from dicelab.analysis.analyze import analyze
    from dicelab.reports.html import build_report
    from dicelab.tune.evaluate import evaluate
    from dicelab.tune.search import run_search

    options = _options(scale, folder, workers, storage, seed)
    log(f"1/5 search: {scale.particles} particles x {scale.generations} generations")
    run_search(options)
    log(f"2/5 evaluate: best and baseline, {scale.repeats} seeds, {scale.eval_epochs} epochs")
    summary = evaluate(
        options, epochs=scale.eval_epochs, repeats=scale.repeats, workers=workers, say=log
    )
    log(f"    {_reduction_words(summary)}")
    log(f"3/5 ablate: {scale.ablate_repeats} seeds per variant")
    ablate(
        options, epochs=scale.eval_epochs, repeats=scale.ablate_repeats, workers=workers, say=log
    )
    log("4/5 analyze")
    analyze(options, say=log)
    log("5/5 report")
    return build_report(folder, study="paper1", storage=storage, title="Reproduction: paper 1")


def dry_run(scale: Paper1) -> str:
    """The resolved protocol of a recipe (search, evaluation, ablation: every setting, epochs,
    seeds) and the images it trains on, with the estimated cost from measured throughput
    (:func:`dicelab.reproduce._common.cost_lines`). Nothing is trained or downloaded."""
    config = scale.config()
    data, model = config.data, config.model
    final_images = TRAIN_IMAGES.get(data.name)
    search_epochs = config.train.epochs
    seeds = f"{config.seed}..{config.seed + scale.repeats - 1}"
    lines = [
        "paper 1 (arXiv 2404.03992): PSO search -> evaluate -> ablate -> analyze -> report",
        f"data: {data.name} ({'downloaded if missing' if data.download else 'local'}); "
        f"search split: first {1 - data.val_fraction:.0%} train, last {data.val_fraction:.0%} "
        "validation; final split: the full training set, scored on the test set",
        f"model: {model.name}, BatchNorm preset {model.batchnorm}; "
        f"faithful choices: {'on' if scale.faithful else 'off'}",
    ]
    if scale.faithful:
        lines.append(
            "  weight_init 0 -> all-zero kernels (warned); screening holds "
            f"{', '.join(scale.screen_reset()) or 'nothing more'} at baseline; asynchronous "
            "swarm updates (one particle after the other); a configuration already trained is "
            "not trained again (position cache)"
        )
    stop = (
        f"stop after {scale.patience} generations without a better best, "
        if (scale.patience)
        else ""
    )
    lines += [
        f"search: PSO, {scale.particles} particles, sparse start (4 optional genes), "
        f"{stop}at most {scale.generations} generations x {search_epochs} epochs "
        f"(<= {scale.particles * scale.generations} trials); fitness: last-epoch validation "
        "accuracy, cut below 0.12",
    ]
    if scale.screen:
        lines.append(
            f"  screening first: {scale.screen} particles x 1 epoch, the best "
            f"{scale.particles} start the swarm"
        )
    if scale.baseline_start:
        lines.append("  the first particle starts at the no-randomness baseline")
    lines += [
        f"  training: optimizer, lr, batch size from the genes; seed {config.seed}; "
        f"loss reduction {config.train.reduction}",
        f"evaluate: best and baseline, {scale.repeats} seeds ({seeds}) x {scale.eval_epochs} "
        "epochs on the full training set"
        + (
            f"; schedule genes rescaled from {search_epochs} to {scale.eval_epochs} epochs"
            if scale.eval_epochs != search_epochs
            else ""
        ),
        f"ablate: at most {_MAX_VARIANTS} variants (best, one per gene, one per category, "
        f"baseline) x {scale.ablate_repeats} seeds x {scale.eval_epochs} epochs",
    ]
    if final_images is None:
        lines.append(f"cost: the training-set size of {data.name} is not known here")
        return "\n".join(lines)
    images = protocol_images(scale, final_images, search_epochs, data.val_fraction)
    lines.append(
        f"images trained on, at most: {sum(images.values()):,} ("
        + ", ".join(f"{k} {v:,}" for k, v in images.items())
        + ")"
    )
    lines.append("cost:")
    lines += cost_lines(model.name, data.name, sum(images.values()))
    return "\n".join(lines)


def protocol_images(
    scale: Paper1, train_images: int, search_epochs: int, val_fraction: float
) -> dict[str, int]:
    """Images each step of the protocol trains on at most (a patience stop or a cut trial
    trains fewer): the search's trials on the search split (``train_images`` less the
    validation share), the evaluation's and the ablation's runs on the full training set."""
    search_images = round(train_images * (1 - val_fraction))
    final = scale.eval_epochs * train_images
    return {
        "screening": scale.screen * search_images,
        "search": scale.particles * scale.generations * search_epochs * search_images,
        "evaluation": 2 * scale.repeats * final,
        "ablation": _MAX_VARIANTS * scale.ablate_repeats * final,
    }


def _reduction_words(summary: dict[str, Any]) -> str:
    """The relative test-error reduction of an evaluation with its standard error, and which
    runs diverged (the means leave them out).

    r = 1 − e_best/e_base, where each error is a mean over the n completed seeds of its side;
    by the delta method its standard error is
    (e_best/e_base)·√((s_best/e_best)²/n_best + (s_base/e_base)²/n_base), with s the standard
    deviation of the test accuracy (that of the test error) over those seeds.
    """
    diverged = "; ".join(summary.get("divergences") or [])
    reduction = summary["error_reduction"]
    if reduction is None:
        why = summary.get("error_reduction_note") or "no errors"
        return f"(no error reduction: {why}; {diverged})" if diverged else f"({why})"
    best, base = summary["best"], summary["baseline"]
    n_best, n_base = len(best["test_accuracy"]), len(base["test_accuracy"])
    words = f"error reduction {reduction:.1%}"
    if min(n_best, n_base) >= 2 and best["error"] > 0:
        ratio = best["error"] / base["error"]
        se = ratio * math.hypot(
            best["std"] / best["error"] / math.sqrt(n_best),
            base["std"] / base["error"] / math.sqrt(n_base),
        )
        seeds = f"{n_best} seeds" if n_best == n_base else f"{n_best} and {n_base} seeds"
        words += f" ± {se:.1%} (s.e., {seeds})"
    return f"{words}, over the completed runs; {diverged}" if diverged else words
