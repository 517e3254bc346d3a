"""The paper's 22-dimensional search space, exactly as the authors' PSO encodes it.

A particle is a real vector ``x[0..21]`` inside :func:`bounds`. The authors keep every gene
continuous inside the swarm and discretise only when decoding (``NeuroEvolution.evaluate``):
``round`` for shuffle and batch size, ``ceil`` for flip and optimizer, ``10^-x`` for the learning
rate and the weight noise (``x >= 6`` turns weight noise off). :func:`decode` turns a vector
into a configuration fragment for :func:`dicelab.config.from_dict`; :func:`baseline_vector` is
the authors' no-randomness baseline (plain SGD, lr 1e-3, batch 128, N(0, 0.05) kernels).

Source: Altarabichi et al. 2024 (arXiv:2404.03992), the authors' notebooks
(``default_settings``, bounds, ``methods``) and ``NeuroEvolution.evaluate``; see
``research/paper1-randomness.md`` §2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FLIP_MODES = {1: "none", 2: "horizontal_and_vertical", 3: "horizontal", 4: "vertical"}
OPTIMIZERS = {1: "sgd", 2: "momentum", 3: "adam"}


@dataclass(frozen=True)
class Gene:
    """One dimension of the particle.

    Attributes:
        name: its name everywhere in dicelab (``--genes``, Optuna parameters, reports): the
            name of the technique or training key it sets.
        low, high: the PSO bounds.
        baseline: its value in the authors' ``default_settings``.
        target: the configuration key it sets (``techniques.<name>.<field>`` or a training key).
        decode: the value the key takes for a gene value.
        rule: the decoding in words, for listings.
        authors: the authors' name for it where that differs (their ``methods`` list says
            ``drnn`` for frozen weights).
    """

    name: str
    low: float
    high: float
    baseline: float
    target: str
    decode: Callable[[float], Any]
    rule: str
    authors: str = ""

    @property
    def param(self) -> str:
        """Its Optuna parameter name in a search: its name."""
        return self.name

    @property
    def technique(self) -> str | None:
        """The randomness technique it sets, or None for the optimizer, lr and batch genes."""
        section, name, *_ = self.target.split(".")
        return name if section == "techniques" else None


def _same(x: float) -> float:
    return float(x)


def _ceil_choice(table: dict[int, Any]) -> Callable[[float], Any]:
    def decode(x: float) -> Any:
        return table[min(max(math.ceil(x), min(table)), max(table))]

    return decode


def _weight_noise(x: float) -> float:
    return 0.0 if x >= 6 else 10.0 ** (-x)


GENES: tuple[Gene, ...] = (
    Gene("shuffle", 0, 1, 0, "techniques.shuffle.enabled", lambda x: round(x) == 1, "round"),
    Gene(
        "flip",
        0,
        4,
        1,
        "techniques.flip.mode",
        _ceil_choice(FLIP_MODES),
        "ceil: <=1 none, 2 horizontal_and_vertical, 3 horizontal, 4 vertical",
    ),
    Gene("rotation", 0, 0.2, 0, "techniques.rotation.factor", _same, "x"),
    Gene("zoom", 0, 0.2, 0, "techniques.zoom.factor", _same, "x"),
    Gene("translation", 0, 0.2, 0, "techniques.translation.factor", _same, "x"),
    Gene("contrast", 0, 0.2, 0, "techniques.contrast.factor", _same, "x"),
    Gene("input_noise", 0, 1, 0, "techniques.input_noise.std", _same, "x"),
    Gene("label_smoothing", 0, 1, 0, "techniques.label_smoothing.eps", _same, "x"),
    Gene("weight_init", 0, 0.1, 0.05, "techniques.weight_init.std", _same, "x"),
    Gene("dropout", 0, 0.5, 0, "techniques.dropout.p", _same, "x"),
    Gene("dropconnect", 0, 0.5, 0, "techniques.dropconnect.p", _same, "x"),
    Gene("frozen_weights", 0, 1, 0, "techniques.frozen_weights.p", _same, "x", "drnn"),
    Gene("activation_noise", 0, 0.1, 0, "techniques.activation_noise.std", _same, "x"),
    Gene("loss_noise", 0, 1, 0, "techniques.loss_noise.std", _same, "x"),
    Gene(
        "optimizer",
        0,
        3,
        1,
        "optimizer.name",
        _ceil_choice(OPTIMIZERS),
        "ceil: <=1 sgd, 2 momentum, 3 adam",
    ),
    Gene("lr", 1, 5, 3, "optimizer.lr", lambda x: 10.0 ** (-x), "10^-x"),
    Gene("lr_schedule", -1, 1, 0, "techniques.lr_schedule.s", _same, "x"),
    Gene("batch", 128, 1024, 128, "train.batch_size", lambda x: int(round(x)), "round"),
    Gene("batch_schedule", -1, 1, 0, "techniques.batch_schedule.s", _same, "x"),
    Gene(
        "weight_noise",
        1,
        6,
        6,
        "techniques.weight_noise.eta",
        _weight_noise,
        "10^-x; x >= 6 is off",
    ),
    Gene("gradient_noise", 0, 1, 0, "techniques.gradient_noise.eta", _same, "x"),
    Gene("gradient_dropout", 0, 0.5, 0, "techniques.gradient_dropout.p", _same, "x"),
)

#: Indices of the optional techniques the authors' sparse initialisation switches on at random
#: (flip..label smoothing, dropout..loss noise, weight noise..gradient dropout).
OPTIONAL = (1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 19, 20, 21)


def bounds() -> tuple[list[float], list[float]]:
    """Lower and upper bounds of the 22 genes."""
    return [g.low for g in GENES], [g.high for g in GENES]


def baseline_vector() -> list[float]:
    """The authors' ``default_settings``: every randomness off, SGD, lr 1e-3, batch 128."""
    return [g.baseline for g in GENES]


def decode(vector: Sequence[float]) -> dict[str, Any]:
    """The configuration fragment (nested sections) that particle ``vector`` stands for.

    Values outside the bounds are clipped first, as the swarm itself clips positions.

    Example:
        >>> fragment = decode(baseline_vector())
        >>> fragment["optimizer"], fragment["train"]
        ({'name': 'sgd', 'lr': 0.001}, {'batch_size': 128})
        >>> fragment["techniques"]["weight_init"], fragment["techniques"]["weight_noise"]
        ({'std': 0.05}, {'eta': 0.0})
    """
    if len(vector) != len(GENES):
        raise ValueError(f"a particle has {len(GENES)} genes, got {len(vector)}")
    return _fragment(zip(GENES, vector, strict=True))


def decode_genes(values: Mapping[str, float]) -> dict[str, Any]:
    """The configuration fragment that sets only the genes in ``values`` (by parameter name,
    :attr:`Gene.param`); the keys of the other genes are left out.

    Example:
        >>> decode_genes({"lr": 2.0, "dropout": 0.3})
        {'optimizer': {'lr': 0.01}, 'techniques': {'dropout': {'p': 0.3}}}
    """
    by_param = {g.param: g for g in GENES}
    return _fragment((by_param[name], x) for name, x in values.items())


def _fragment(genes: Iterable[tuple[Gene, float]]) -> dict[str, Any]:
    """Nested sections holding each gene's decoded value at its target key (clipped first)."""
    fragment: dict[str, Any] = {}
    for gene, raw in genes:
        x = min(max(float(raw), gene.low), gene.high)
        node = fragment
        *sections, key = gene.target.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = gene.decode(x)
    return fragment


def format_number(value: float, *, scientific: bool = False) -> str:
    """A real value as a person writes it: ``1e-3`` rather than ``0.001`` or a gene code,
    three significant digits, plain notation between 0.01 and 10,000 unless ``scientific``
    (learning rates and noise scales read best as powers of ten).

    >>> [format_number(v) for v in (1e-3, 2.5e-4, 0.25, 128.0, 0.0, 12345.0)]
    ['1e-3', '2.5e-4', '0.25', '128', '0', '1.23e4']
    >>> format_number(0.0292, scientific=True)
    '2.92e-2'
    """
    if value == 0 or (not scientific and 1e-2 <= abs(value) < 1e4):
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def readable(params: Mapping[str, float]) -> dict[str, str]:
    """What a trial's gene values (by parameter name) mean, in real units: the optimizer's
    name, the learning rate as ``1e-3``, the batch size, each technique's strength or
    ``off``. Genes not in ``params`` are left out.

    >>> readable({"lr": 3.0, "optimizer": 2.4, "batch": 369.7, "weight_noise": 6.0})
    {'lr': '1e-3', 'optimizer': 'adam', 'batch': '370', 'weight_noise': 'off'}
    >>> readable({"shuffle": 0.8, "dropout": 0.1234, "flip": 3.5})
    {'shuffle': 'on', 'dropout': '0.123', 'flip': 'vertical'}
    """
    by_param = {g.param: g for g in GENES}
    shown: dict[str, str] = {}
    for name, raw in params.items():
        gene = by_param[name]
        value = gene.decode(min(max(float(raw), gene.low), gene.high))
        if isinstance(value, bool):
            shown[name] = "on" if value else "off"
        elif isinstance(value, str):
            shown[name] = "off" if value == "none" and gene.technique else value
        elif gene.technique is not None and value == 0:
            shown[name] = "off"
        else:
            shown[name] = format_number(float(value), scientific=gene.rule.startswith("10^-x"))
    return shown
