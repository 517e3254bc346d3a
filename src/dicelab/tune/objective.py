"""The search space of a dicelab search and the objective that trains one configuration.

The space is the paper's 22 genes (:mod:`dicelab.paper_space`), or a subset of them. Each gene
is an Optuna ``FloatDistribution`` over the authors' PSO bounds, named after the gene with
underscores (``input_noise``, ``lr``). The genes that are not searched stay at the authors'
baseline. A trial's parameters are decoded with the authors' rules (rounding, ceiling, 10^−x)
into a configuration fragment, and that fragment is laid over the base configuration.

The objective follows the authors' search protocol. It trains on the first 80% of the official
training set (``data.split=search``) for the search's epochs, and the fitness is the
validation accuracy of the **last** epoch. Each epoch's validation accuracy is reported to the
trial, for pruning. A run whose validation accuracy falls below ``cut_threshold`` (0.12, as
the authors') is stopped and scores that accuracy. A run that diverges (NaN or infinite loss
or weights) fails with the reason (the user attribute ``pso_no_retry``), and is not retried.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import FloatDistribution

from dicelab import paper_space
from dicelab.config import RunConfig, config_hash, from_dict, merge, to_dict
from dicelab.exceptions import ConfigError, UnknownNameError
from dicelab.techniques import TECHNIQUES
from dicelab.train import Trainer
from dicelab.tune._pso.sampler import NO_RETRY, SparseInit


def _needs_images(gene: paper_space.Gene) -> bool:
    return gene.technique is not None and TECHNIQUES.get(gene.technique).needs_images


@dataclass(frozen=True)
class SearchSpace:
    """The searched genes; the others stay at the baseline."""

    genes: tuple[paper_space.Gene, ...]

    @classmethod
    def paper(cls, names: Sequence[str] | None = None, *, images: bool = True) -> SearchSpace:
        """The paper's space, or the genes named in ``names`` (gene or parameter names).

        With ``images=False`` the image augmentations are left out (they need image data).
        """
        by_name = {g.param: g for g in paper_space.GENES}
        if names is None:
            chosen = list(paper_space.GENES)
        else:
            chosen = []
            for raw in names:
                key = raw.strip().replace(" ", "_")
                if key not in by_name:
                    raise UnknownNameError("--genes", raw, by_name, kind="gene")
                chosen.append(by_name[key])
        if not images:
            dropped = [g.param for g in chosen if _needs_images(g)]
            if names is not None and dropped:
                raise ConfigError(
                    "--genes",
                    ",".join(dropped),
                    "image augmentations need image data; this dataset's inputs are not images",
                )
            chosen = [g for g in chosen if not _needs_images(g)]
        if not chosen:
            raise ConfigError("--genes", "", "name at least one gene (`dicelab list space`)")
        return cls(tuple(dict.fromkeys(chosen)))

    def distributions(self) -> dict[str, FloatDistribution]:
        return {g.param: FloatDistribution(g.low, g.high) for g in self.genes}

    def vector(self, params: Mapping[str, float]) -> list[float]:
        """The full 22-gene vector: the baseline with the searched genes set from ``params``."""
        values = {g.param: float(params[g.param]) for g in self.genes}
        return [values.get(g.param, g.baseline) for g in paper_space.GENES]

    def baseline_params(self) -> dict[str, float]:
        return {g.param: float(g.baseline) for g in self.genes}

    def sparse_init(self, k: int = 4) -> SparseInit:
        """The authors' sparse start over the searched optional genes."""
        optional = tuple(
            paper_space.GENES[i].param
            for i in paper_space.OPTIONAL
            if paper_space.GENES[i] in self.genes
        )
        return SparseInit(optional, {n: self.baseline_params()[n] for n in optional}, k)

    def describe(self) -> dict[str, list[float]]:
        """Name → bounds, as stored with a study to recognise it later."""
        return {g.param: [float(g.low), float(g.high)] for g in self.genes}


def configure(base: RunConfig, space: SearchSpace, params: Mapping[str, float]) -> RunConfig:
    """The run configuration of a trial: the base with the searched genes, decoded, laid over
    it. Every key a searched gene does not set keeps the base configuration's value (a base
    ``optimizer.lr=0.1`` stays 0.1 when ``lr`` is not searched; a technique's other
    hyperparameters stay as the base sets them)."""
    fragment = paper_space.decode_genes({g.param: params[g.param] for g in space.genes})
    config = merge(to_dict(base), fragment)
    init = config["techniques"].get("weight_init", {})
    if init.get("zeros") and init.get("std") == 0 and "weight_init" not in space.distributions():
        # The faithful all-zero kernels stand for the searched gene at 0; with the gene not
        # searched, the base's std 0 means "no init randomness" (a network of zero kernels
        # would train to chance in every trial): PyTorch's default init.
        del config["techniques"]["weight_init"]
    return from_dict(config)


class SearchObjective:
    """Train a trial's configuration; its fitness is the last-epoch validation accuracy.

    Args:
        base: the base configuration (dataset, model, split ``search``, epochs, seed).
        space: the searched genes.
        prune: ask the study's pruner after every epoch.
        cut_threshold: stop a run as soon as its validation accuracy falls below this.
    """

    def __init__(
        self,
        base: RunConfig,
        space: SearchSpace,
        *,
        prune: bool = False,
        cut_threshold: float = 0.12,
    ) -> None:
        self.base = base
        self.space = space
        self.prune = prune
        self.cut_threshold = cut_threshold

    def __call__(self, trial: optuna.Trial) -> float:
        params = {
            name: trial.suggest_float(name, dist.low, dist.high)
            for name, dist in self.space.distributions().items()
        }
        config = configure(self.base, self.space, params)
        trial.set_user_attr("config_hash", config_hash(config))
        # The real values (lr 1e-3, adam, off) beside the gene codes, for every reader of the
        # storage (optuna-dashboard shows user attributes).
        for name, shown in paper_space.readable(params).items():
            trial.set_user_attr(name, shown)

        def on_epoch(row: dict[str, Any]) -> str | None:
            accuracy = row["val_acc"]
            trial.report(accuracy, row["epoch"])
            if self.prune and trial.should_prune():
                return "pruned"
            if accuracy < self.cut_threshold:
                return f"validation accuracy {accuracy:.4f} fell below {self.cut_threshold}"
            return None

        # The search records each trial in the trackers itself (search.py); the trial's own
        # run has no folder to track into.
        result = Trainer(dataclasses.replace(config, log=[])).fit(on_epoch=on_epoch)
        trial.set_user_attr("epochs_completed", result.epochs_completed)
        trial.set_user_attr("seconds", round(result.wall_time_s, 3))
        if result.status == "diverged":
            # NaN makes Optuna record the trial as FAIL; the mark tells the PSO sampler that
            # retrying the same position would diverge again.
            trial.set_user_attr(NO_RETRY, result.message)
            return math.nan
        if result.status == "stopped":
            trial.set_user_attr("stopped", result.message)
            if result.message == "pruned":
                raise optuna.TrialPruned(f"pruned after epoch {result.epochs_completed}")
        value = result.last_val_acc
        if value is None or not math.isfinite(value):
            raise ConfigError(
                "data.split", self.base.data.split, "a search needs validation data (search)"
            )
        return value
