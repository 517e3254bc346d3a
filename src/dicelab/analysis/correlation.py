"""Which injected randomness goes with a good search result: rank correlations and importance.

:func:`correlations` redoes the paper's correlation analysis (``research/paper1-randomness.md``
§7): the completed trials of a search are grouped by their decoded optimizer (plain SGD, SGD
with momentum, Adam, and all trials together), and in each group every gene's *decoded
strength* (:func:`strengths`: the dropout rate, the learning rate, 0/1 for shuffling...) is
rank-correlated with the trial's value, the validation accuracy of its last epoch, with
Spearman's rho. Grouping by optimizer matters because the same amount of noise helps one
optimizer and hurts another.

**These correlations are confounded, not causal.** The PSO sampler does not draw the genes
independently at random: the swarm concentrates its trials near the good regions it has
found, so genes become correlated with each other (and with the generation, i.e. with how
far the search had progressed), and a gene that merely travelled along with the best
particles correlates with accuracy without causing any of it. Only the ablation protocol
(resetting one technique at a time and retraining) measures a technique's effect.

:func:`importance` wraps Optuna's hyperparameter importance (PED-ANOVA, Optuna 5's default,
or fANOVA) over the same trials; it is computed on the raw gene values of the search space.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from dicelab import paper_space
from dicelab.exceptions import ConfigError, UnknownNameError

#: The group that holds every completed trial, whatever its optimizer.
ALL = "all"
#: The gene that selects the optimizer: it defines the groups and is not a strength.
OPTIMIZER_GENE = "optimizer"
#: The fewest completed trials :func:`importance` accepts.
MIN_IMPORTANCE_TRIALS = 10

Evaluator = Literal["ped-anova", "fanova"]
EVALUATORS: tuple[Evaluator, ...] = ("ped-anova", "fanova")


_BY_PARAM: dict[str, int] = {g.param: i for i, g in enumerate(paper_space.GENES)}
_OPTIMIZER_INDEX = _BY_PARAM[OPTIMIZER_GENE]


def _lookup(fragment: Mapping[str, Any], target: str) -> Any:
    """The value at a dotted ``target`` path of a decoded configuration fragment."""
    node: Any = fragment
    for key in target.split("."):
        node = node[key]
    return node


def _decoded(trial_params: Mapping[str, float]) -> tuple[dict[str, Any], list[str]]:
    """The decoded fragment of a trial and the gene parameters it names, in gene order.

    The 22-gene vector is the baseline with the trial's genes set, as
    :meth:`dicelab.tune.objective.SearchSpace.vector` builds it; parameters that are not genes
    are ignored.
    """
    vector = paper_space.baseline_vector()
    present: list[str] = []
    for raw, value in trial_params.items():
        name = raw.replace(" ", "_")
        index = _BY_PARAM.get(name)
        if index is not None:
            vector[index] = float(value)
            present.append(name)
    present.sort(key=_BY_PARAM.__getitem__)
    return paper_space.decode(vector), present


def _strength(value: Any) -> float:
    """A decoded value as a number: on/off as 0/1, a flip mode as 0 (none) or 1, else itself."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, str):
        return 0.0 if value == "none" else 1.0
    return float(value)


def strengths(trial_params: Mapping[str, float]) -> dict[str, float]:
    """The decoded strength of each gene a trial sets, keyed by parameter name.

    The strength is what the technique actually used, after the paper's decoding rules
    (rounding, ceiling, 10^-x): 0/1 for shuffle, 0 for no flip and 1 for any flip mode, the
    weight-noise eta (0 when the gene is at 6, "off"), the learning rate itself, the batch
    size, and the strength value of the other techniques. The optimizer gene is left out: it
    is the grouping (:func:`optimizer_of`), not an amount of noise.

    Example:
        >>> strengths({"weight_noise": 2.0, "lr": 3.0, "flip": 3.0, "optimizer": 3.0})
        {'flip': 1.0, 'lr': 0.001, 'weight_noise': 0.01}
    """
    return _decode_trial(trial_params)[1]


def optimizer_of(trial_params: Mapping[str, float]) -> str:
    """The decoded optimizer of a trial: ``"sgd"``, ``"momentum"`` or ``"adam"``.

    A trial that does not search the optimizer gene uses the baseline's, plain SGD.
    """
    return _decode_trial(trial_params)[0]


def _decode_trial(trial_params: Mapping[str, float]) -> tuple[str, dict[str, float]]:
    """A trial's optimizer and gene strengths, from one decoding."""
    fragment, present = _decoded(trial_params)
    values = {
        name: _strength(_lookup(fragment, paper_space.GENES[_BY_PARAM[name]].target))
        for name in present
        if name != OPTIMIZER_GENE
    }
    return str(_lookup(fragment, paper_space.GENES[_OPTIMIZER_INDEX].target)), values


@dataclass(frozen=True)
class CorrelationRow:
    """The rank correlation of one gene's strength with the validation accuracy in one group.

    Attributes:
        group: ``"all"`` or an optimizer name (``"sgd"``, ``"momentum"``, ``"adam"``).
        gene: the gene's parameter name (``"input_noise"``).
        rho: Spearman's rho, or None when it is undefined (see ``note``).
        p_value: the two-sided p-value of rho = 0, or None with ``rho``.
        n: the number of trials the correlation is computed over.
        note: why ``rho`` is None (a constant column, too few trials); empty otherwise.
        q_value: the p-value adjusted for the false discovery rate (Benjamini–Hochberg) over
            every row of the same analysis (:func:`fdr`), or None with ``p_value``. A table
            of 80 correlations finds about 4 with p < 0.05 by chance alone; q < 0.05 keeps
            the expected share of false discoveries among the rows called significant at 5%.
    """

    group: str
    gene: str
    rho: float | None
    p_value: float | None
    n: int
    note: str = ""
    q_value: float | None = None


def _completed(study: optuna.Study) -> list[FrozenTrial]:
    """The study's completed trials with a finite value, in trial order."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [t for t in done if t.value is not None and math.isfinite(t.value)]


def _spearman(x: np.ndarray, y: np.ndarray, *, min_trials: int) -> tuple[Any, Any, int, str]:
    """Spearman's rho and p-value of the pairs where ``x`` is known, or Nones and a note."""
    known = ~np.isnan(x)
    x, y = x[known], y[known]
    n = int(x.size)
    if n < min_trials:
        return None, None, n, f"only {n} trials (fewer than {min_trials})"
    if np.all(x == x[0]):
        return None, None, n, "constant strength: the gene did not vary in this group"
    if np.all(y == y[0]):
        return None, None, n, "constant validation accuracy in this group"
    result = stats.spearmanr(x, y)
    rho, p = float(result.statistic), float(result.pvalue)
    if not (math.isfinite(rho) and math.isfinite(p)):
        return None, None, n, "the correlation is undefined"
    return rho, p, n, ""


def correlations(study: optuna.Study, *, min_trials: int = 5) -> list[CorrelationRow]:
    """Spearman correlation of every gene's strength with the validation accuracy, by optimizer.

    Over the study's completed trials, in the groups ``"all"``, then each optimizer that
    occurs (``"sgd"``, ``"momentum"``, ``"adam"``, in that order), one row per group and gene
    (the genes any completed trial sets, in the paper's order, without the optimizer). A group
    with fewer than ``min_trials`` trials, or a gene or accuracy that is constant in a group,
    gets ``rho=None``, ``p_value=None`` and a ``note`` instead of a NaN. Each row's ``q_value``
    is its p-value corrected for the false discovery rate over all the rows (:func:`fdr`).
    The correlations are confounded by the PSO sampling (see the module's docstring):
    describe, do not conclude.

    Raises:
        ConfigError: ``min_trials`` is below 3 (a rank correlation of two points is ±1).
    """
    if min_trials < 3:
        raise ConfigError("min_trials", min_trials, "must be >= 3")
    trials = _completed(study)
    genes: dict[str, None] = {}
    decoded: list[tuple[str, dict[str, float]]] = []
    for trial in trials:
        optimizer, values = _decode_trial(trial.params)
        genes.update(dict.fromkeys(values))
        decoded.append((optimizer, values))
    order = sorted(genes, key=_BY_PARAM.__getitem__)
    accuracy = np.array([t.value for t in trials], dtype=float)
    table = np.array(
        [[values.get(g, math.nan) for g in order] for _, values in decoded], dtype=float
    ).reshape(len(trials), len(order))
    optimizers = np.array([opt for opt, _ in decoded], dtype=object)
    groups = [ALL] + [o for o in paper_space.OPTIMIZERS.values() if np.any(optimizers == o)]
    rows: list[CorrelationRow] = []
    for group in groups:
        members = np.ones(len(trials), bool) if group == ALL else optimizers == group
        for j, gene in enumerate(order):
            rho, p, n, note = _spearman(
                table[members, j], accuracy[members], min_trials=min_trials
            )
            rows.append(CorrelationRow(group, gene, rho, p, n, note))
    return fdr(rows)


#: The false-discovery rate at which :func:`fdr`'s q-values call a correlation significant.
FDR_LEVEL = 0.05
#: How the q-values are computed, in words (captions and tables say it).
FDR_METHOD = "Benjamini–Hochberg false-discovery-rate correction"


def fdr(rows: Sequence[CorrelationRow]) -> list[CorrelationRow]:
    """``rows`` with ``q_value`` set: the p-values adjusted for the false discovery rate by
    Benjamini–Hochberg (:func:`scipy.stats.false_discovery_control`) over every row that has
    a p-value. Rows without one keep ``q_value=None``.

    The family is all the rows given, i.e. every cell of the heat map, across genes and
    optimizer groups: testing 80 cells at p < 0.05 would otherwise call about 4 significant
    by chance alone.
    """
    tested = [i for i, r in enumerate(rows) if r.p_value is not None]
    adjusted: dict[int, float] = {}
    if tested:
        q = stats.false_discovery_control([rows[i].p_value for i in tested], method="bh")
        adjusted = {i: float(v) for i, v in zip(tested, np.atleast_1d(q), strict=True)}
    return [replace(r, q_value=adjusted.get(i)) for i, r in enumerate(rows)]


#: Depth of fANOVA's trees (Optuna's default is 64; see :func:`importance`).
FANOVA_DEPTH = 8


def importance(
    study: optuna.Study, *, evaluator: Evaluator = "ped-anova", seed: int = 0
) -> dict[str, float]:
    """Optuna's normalised hyperparameter importances over the completed trials.

    ``"ped-anova"`` is :class:`optuna.importance.PedAnovaImportanceEvaluator` (Optuna 5's
    default: fast, it asks which values the top 10% of trials share); ``"fanova"`` is
    :class:`optuna.importance.FanovaImportanceEvaluator` with ``seed`` (a random forest's
    variance decomposition; it needs scikit-learn). Its trees are limited to depth 8 instead of
    Optuna's 64: on a 1,000-trial benchmark study the importances moved by less than 0.01 and
    the evaluation ran 6× faster (26 s → 4 s), which keeps a 10,000-trial study analysable in
    seconds (BENCHMARKS.md). The result maps parameter
    names to importances summing to 1, most important first. Importances are measured on the
    raw gene values, and share the sampling confound of :func:`correlations`.

    Raises:
        UnknownNameError: ``evaluator`` is not one of :data:`EVALUATORS`.
        ConfigError: the study has fewer than :data:`MIN_IMPORTANCE_TRIALS` completed trials.
    """
    if evaluator not in EVALUATORS:
        raise UnknownNameError("evaluator", evaluator, EVALUATORS)
    n = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if n < MIN_IMPORTANCE_TRIALS:
        raise ConfigError(
            "study", n, f"importance needs at least {MIN_IMPORTANCE_TRIALS} completed trials"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        chosen: optuna.importance.BaseImportanceEvaluator = (
            optuna.importance.PedAnovaImportanceEvaluator()
            if evaluator == "ped-anova"
            else optuna.importance.FanovaImportanceEvaluator(
                n_trees=64, max_depth=FANOVA_DEPTH, seed=seed
            )
        )
        result = optuna.importance.get_param_importances(study, evaluator=chosen)
    return {name: float(value) for name, value in result.items()}


def importances(
    study: optuna.Study, *, evaluators: Sequence[Evaluator] = EVALUATORS, seed: int = 0
) -> dict[str, dict[str, float]]:
    """:func:`importance` with each evaluator, keyed by evaluator name (for the tables)."""
    return {name: importance(study, evaluator=name, seed=seed) for name in evaluators}
