"""The validated run configuration.

A run is described by one :class:`RunConfig`: data, model, optimizer, training, seed, device and
the randomness techniques. It is read from YAML (:func:`load_config`), overridden with
``--set key=value`` strings (:func:`apply_overrides`) and checked field by field: an unknown key
or a bad value raises :class:`~dicelab.exceptions.ConfigError` naming the dotted field path, the
value received and what is allowed (with "did you mean" for near-miss names). The resolved
configuration, every default filled in, is what a run folder records (:func:`to_dict`).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import itertools
import json
import math
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from dicelab.exceptions import ConfigError, UnknownNameError


def spec(default: Any, doc: str, *, check: Callable[[Any], str | None] | None = None) -> Any:
    """A dataclass field with a one-line description and an optional range check.

    ``check(value)`` returns ``None`` when the value is allowed and otherwise a phrase saying
    what is allowed ("must be > 0"). A mapping or list default is copied for every instance.
    """
    if isinstance(default, (dict, list)):
        return field(
            default_factory=lambda: copy.deepcopy(default), metadata={"doc": doc, "check": check}
        )
    return field(default=default, metadata={"doc": doc, "check": check})


def positive(value: float) -> str | None:
    """Range check: the value must be strictly positive."""
    return None if value > 0 else "must be > 0"


def at_least(low: float) -> Callable[[float], str | None]:
    """Range check: the value must be ``>= low``."""
    return lambda value: None if value >= low else f"must be >= {low}"


def in_interval(
    low: float, high: float, *, open_low: bool = False, open_high: bool = False
) -> Callable[[float], str | None]:
    """Range check for an interval; the message writes the interval in the usual notation."""

    def check(value: float) -> str | None:
        ok_low = value > low if open_low else value >= low
        ok_high = value < high if open_high else value <= high
        if ok_low and ok_high:
            return None
        return f"must lie in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"

    return check


def increasing(values: list[int]) -> str | None:
    """Range check for a list of counts: each >= 1 and larger than the one before."""
    if all(v >= 1 for v in values) and all(a < b for a, b in itertools.pairwise(values)):
        return None
    return "must be increasing integers >= 1"


def distinct(values: list[Any]) -> str | None:
    """Range check for a list of names: none repeated."""
    return None if len(set(values)) == len(values) else "must not repeat a name"


_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def _device_check(value: str) -> str | None:
    return None if _DEVICE.match(value) else "must be auto, cpu, cuda, cuda:N or mps"


@dataclass
class DataConfig:
    """Which dataset, where its files are, and how it is split."""

    name: str = spec("digits", "dataset name (`dicelab list datasets`) or `module:function`")
    root: str = spec("data", "folder holding the standard datasets' files and caches")
    download: bool = spec(False, "fetch missing standard files from the official mirrors")
    split: Literal["search", "final"] = spec(
        "search",
        "search: train on the first 80% of the official training set, validate on the last "
        "20%; final: train on all of it (no validation)",
    )
    val_fraction: float = spec(
        0.2,
        "validation share under split=search",
        check=in_interval(0, 1, open_low=True, open_high=True),
    )
    train_limit: int | None = spec(
        None, "keep only the first N training examples (quick runs)", check=at_least(1)
    )


@dataclass
class ModelConfig:
    """The network: a registered name or `module:function`, its BatchNorm preset and options.

    Any other key under ``model:`` is an option of the chosen model (``model.blocks=2``); it is
    checked against the model's own parameters when the model is built.
    """

    name: str = spec("vgg", "model name (`dicelab list models`) or `module:function`")
    batchnorm: Literal["pytorch", "keras"] = spec(
        "pytorch",
        "BatchNorm preset: pytorch (momentum 0.1, eps 1e-5) or keras (the authors' momentum "
        "0.99 = 0.01 in PyTorch terms, eps 1e-3; combine with train.recalibrate_bn)",
    )
    options: dict[str, Any] = spec({}, "model-specific options, written flat under model:")


@dataclass
class OptimizerConfig:
    """The base optimizer (the first paper's three: SGD, SGD with momentum, Adam; and AdamW),
    its weight decay and gradient clipping, and an optional weight-perturbation wrapper around
    it (the second paper's SAM and RWP family).

    Hyperparameters of an optimizer or wrapper that is not chosen are kept but unused (a search
    may switch ``name`` between trials of one base configuration).
    """

    name: Literal["sgd", "momentum", "adam", "adamw"] = spec(
        "sgd",
        "sgd, momentum (SGD with momentum), adam, or adamw (Adam with decoupled weight decay)",
    )
    lr: float = spec(
        1e-3, "learning rate (the schedule's starting rate: see schedule)", check=positive
    )
    momentum: float = spec(
        0.9, "momentum of the `momentum` optimizer", check=in_interval(0, 1, open_high=True)
    )
    nesterov: bool = spec(
        False, "Nesterov momentum for the `momentum` optimizer (unused by the others)"
    )
    beta1: float = spec(
        0.9, "Adam's and AdamW's first-moment decay", check=in_interval(0, 1, open_high=True)
    )
    beta2: float = spec(
        0.999, "Adam's and AdamW's second-moment decay", check=in_interval(0, 1, open_high=True)
    )
    eps: float = spec(1e-7, "Adam's and AdamW's epsilon (Keras default 1e-7)", check=positive)
    weight_decay: float = spec(
        0.0,
        "weight decay (the papers' runs use none): L2, added to the gradient, for sgd, "
        "momentum and adam; decoupled (w ← w − lr·wd·w) for adamw",
        check=at_least(0),
    )
    decay_exclude: list[Literal["bias", "norm"]] = spec(
        [],
        "parameters that get no weight decay: bias (every layer's bias), norm (the scales and "
        "shifts of normalisation layers: BatchNorm, GroupNorm, LayerNorm, InstanceNorm, RMSNorm)",
        check=distinct,
    )
    clip_grad_norm: float | None = spec(
        None,
        "clip the update gradient's global L2 norm to this value before every optimizer "
        "step (after perturbation mixing and the gradient techniques); null: no clipping",
        check=positive,
    )
    perturbation: Literal["none", "sam", "asam", "rwp", "arwp", "mrwp", "marwp"] = spec(
        "none",
        "weight-perturbation wrapper around the base optimizer: none, sam, asam (adaptive "
        "SAM), rwp, arwp (adaptive RWP), mrwp, marwp (mixed: λ·perturbed + (1−λ)·clean)",
    )
    rho: float | None = spec(
        None, "SAM/ASAM ascent radius ρ (default 0.05 for sam, 2.0 for asam)", check=at_least(0)
    )
    sigma: float | None = spec(
        None,
        "RWP-family relative noise scale σ₀ (default 0.01 for rwp/arwp, 0.015 for mrwp/marwp)",
        check=at_least(0),
    )
    sigma_schedule: Literal["constant", "cosine"] = spec(
        "constant", "σ over the run: constant, or cosine from σ₀ up to σ₀·(1 + sigma_inc)"
    )
    sigma_inc: float = spec(10.0, "relative σ increase of the cosine schedule", check=at_least(0))
    lam: float = spec(
        0.5, "mrwp/marwp weight λ of the perturbed gradient", check=in_interval(0, 1)
    )
    eta: float = spec(0.1, "arwp/marwp η: noise std divided by sqrt(1 + η·F)", check=at_least(0))
    beta: float = spec(
        0.99,
        "arwp/marwp decay β of the squared-gradient sum F ← β·F + g²",
        check=in_interval(0, 1, open_high=True),
    )
    mix_batches: Literal["consecutive", "same"] = spec(
        "consecutive",
        "mrwp/marwp: gradients from two consecutive batches, one update per two (the "
        "authors' code), or both from the same batch (a deviation)",
    )


@dataclass
class ScheduleConfig:
    """The learning-rate schedule: the rate each update gets, from ``optimizer.lr``.

    Lengths (``warmup``, ``step_size``, ``milestones``) count intervals: optimizer updates
    under ``interval: step``, epochs under ``interval: epoch``. Options of a schedule that is
    not chosen are kept but unused. See :mod:`dicelab.optim.schedule` for the formulas.
    """

    name: Literal["constant", "cosine", "step", "multistep"] = spec(
        "constant",
        "constant (optimizer.lr throughout), cosine (from optimizer.lr down to min_lr at the "
        "end of the run, the RWP authors' schedule), step (× gamma every step_size "
        "intervals) or multistep (× gamma at each of the milestones)",
    )
    interval: Literal["step", "epoch"] = spec(
        "step", "how often the rate changes: step (every optimizer update) or epoch"
    )
    warmup: int = spec(
        0,
        "linear warm-up over the first N intervals, from lr/N up to lr, before the schedule "
        "proper; 0: none",
        check=at_least(0),
    )
    min_lr: float = spec(0.0, "cosine: the rate the cosine ends at", check=at_least(0))
    step_size: int | None = spec(
        None, "step: intervals between two multiplications by gamma (required)", check=at_least(1)
    )
    milestones: list[int] = spec(
        [], "multistep: the intervals at which the rate is multiplied by gamma", check=increasing
    )
    gamma: float = spec(
        0.1, "step/multistep: the factor of each decay", check=in_interval(0, 1, open_low=True)
    )


@dataclass
class TrainConfig:
    """The training loop."""

    epochs: int = spec(10, "passes over the training set", check=at_least(1))
    batch_size: int = spec(128, "examples per update", check=at_least(1))
    eval_batch_size: int = spec(1000, "examples per evaluation forward pass", check=at_least(1))
    reduction: Literal["mean", "sum"] = spec(
        "sum",
        "how per-example losses are reduced before backward: sum is the authors' Keras "
        "behaviour (the gradient of the batch sum), mean is PyTorch's usual",
    )
    recalibrate_bn: Literal[True, False, "auto"] = spec(
        "auto",
        "recompute BatchNorm running statistics from training data before an evaluation: "
        "true (every evaluation, the whole training set), false (never) or auto (only while "
        "the running statistics still hold over 1% of their starting values, on at most 2048 "
        "training examples; long runs pay nothing)",
    )
    channels_last: Literal[True, False, "auto"] = spec(
        "auto",
        "keep 2-D convolution weights and activations in channels_last (NHWC) memory: auto "
        "(on for models with 2-D convolutions; measured faster on CPU, BENCHMARKS.md), true, "
        "false. Results agree with the default layout up to float rounding",
    )
    precision: Literal["fp32", "bf16", "fp16"] = spec(
        "fp32",
        "arithmetic of the forward pass and loss: fp32, bf16 or fp16 (mixed precision via "
        "autocast; fp16 scales the loss with a GradScaler and takes no perturbation "
        "optimizer). Lower precision changes results beyond float rounding",
    )
    compile: bool = spec(
        False,
        "compile the model with torch.compile (first epoch slower while it compiles; with "
        "activation noise on it measured slower on CPU)",
    )


@dataclass
class RunConfig:
    """Everything that determines a run's results."""

    seed: int = spec(0, "run seed; every random stream is derived from it", check=at_least(0))
    device: str = spec(
        "auto", "auto (cuda when available), cpu, cuda, cuda:N", check=_device_check
    )
    data: DataConfig = field(default_factory=DataConfig, metadata={"doc": "dataset"})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"doc": "network"})
    optimizer: OptimizerConfig = field(
        default_factory=OptimizerConfig, metadata={"doc": "base optimizer"}
    )
    schedule: ScheduleConfig = field(
        default_factory=ScheduleConfig, metadata={"doc": "learning-rate schedule"}
    )
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"doc": "training loop"})
    techniques: dict[str, Any] = spec(
        {},
        "randomness techniques that are on: {name: {hyperparameter: value}} or "
        "{name: strength} (`dicelab list techniques`)",
    )
    log: list[Literal["tensorboard", "mlflow", "wandb"]] = spec(
        [],
        "experiment trackers that also record the run: tensorboard (<run>/tensorboard), "
        "mlflow (<run>/mlruns) and/or wandb (offline, <run>/wandb). Not part of the "
        "configuration hash: changing it never blocks a resume",
        check=distinct,
    )


# ---------------------------------------------------------------------------------------------
# Reading and checking


def from_dict(data: Mapping[str, Any] | None) -> RunConfig:
    """Build a :class:`RunConfig` from nested plain data, checking every key and value."""
    from dicelab.data import DATASETS
    from dicelab.models.build import resolve_options
    from dicelab.optim.factory import check_reduction, resolve_perturbation
    from dicelab.optim.schedule import check_schedule
    from dicelab.techniques import create_technique

    config: RunConfig = _build(RunConfig, data or {}, "")
    if ":" not in config.data.name:
        DATASETS.get(config.data.name)  # an unknown name fails here, before any work
    config.model.options = resolve_options(config.model.name, config.model.options)
    resolve_perturbation(config.optimizer)
    check_reduction(config.optimizer.perturbation, config.train.reduction)
    # A set of names: one spelling, so [norm, bias] and [bias, norm] mean and hash the same.
    config.optimizer.decay_exclude = sorted(config.optimizer.decay_exclude)
    check_schedule(config.schedule)
    # Techniques that are on, with every hyperparameter filled in; those at their default
    # (off) are dropped, so a configuration that spells them out means and hashes the same.
    resolved: dict[str, Any] = {}
    for name, params in config.techniques.items():
        technique = create_technique(str(name), params)
        if not technique.is_noop:
            resolved[str(name)] = technique.hyperparameters()
    config.techniques = resolved
    return config


def load_config(
    path: str | Path | Sequence[str | Path] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> RunConfig:
    """Read a YAML file (or start from the defaults), apply ``key=value`` overrides, validate.

    ``path`` may also be a sequence of files: they are merged in order (:func:`read_yamls`).
    """
    return from_dict(apply_overrides(read_yamls(path), overrides))


def read_yamls(paths: str | Path | Sequence[str | Path] | None) -> dict[str, Any]:
    """The mapping of one YAML file, or of several merged in order (each :func:`merge`d over
    the ones before it: sections merge key by key, a later value wins); ``{}`` for none."""
    if paths is None:
        return {}
    if isinstance(paths, (str, Path)):
        return read_yaml(Path(paths))
    data: dict[str, Any] = {}
    for path in paths:
        data = merge(data, read_yaml(Path(path)))
    return data


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` laid over ``base``: mappings present in both merge recursively; any other
    value of ``over`` (a number, a string, a list, null) replaces ``base``'s. Neither input
    is changed.

    Example:
        >>> merge({"optimizer": {"name": "sgd", "lr": 0.1}, "seed": 1},
        ...       {"optimizer": {"lr": 0.01}, "techniques": {"dropout": 0.2}})
        {'optimizer': {'name': 'sgd', 'lr': 0.01}, 'seed': 1, 'techniques': {'dropout': 0.2}}
    """
    result = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested configuration data as one mapping of dotted keys; the leaves (scalars, lists
    and empty mappings) are kept as they are.

    >>> flatten({"seed": 0, "optimizer": {"lr": 0.01}, "techniques": {}})
    {'seed': 0, 'optimizer.lr': 0.01, 'techniques': {}}
    """
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping stored in a YAML file; a file that cannot be read, is not UTF-8 text, is
    not valid YAML or holds more than plain data raises :class:`ConfigError`."""
    if not path.is_file():
        raise ConfigError("--config", str(path), "no such file")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise ConfigError("--config", str(path), f"cannot be read ({err})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            "--config",
            str(path),
            f"must be UTF-8 text; byte 0x{err.object[err.start]:02x} at offset {err.start} is not",
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError("--config", str(path), f"is not valid YAML ({err})") from None
    except RecursionError:
        raise ConfigError(
            "--config", str(path), "is nested too deeply to be a configuration"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("--config", str(path), "must hold a mapping of sections at top level")
    return plain_data(data, "", f" (in {path})")


#: Most values (mappings, lists and scalars, counted as written out) plain data may hold: YAML
#: aliases can make a tiny file stand for an exponentially large value.
MAX_PLAIN_NODES = 100_000

_PLAIN = "must be plain data: a number, a string, true/false, null, a list or a mapping"


def plain_data(value: Any, path: str, where: str = "") -> Any:
    """``value`` checked to be plain data (what JSON holds) and deep-copied as such.

    YAML can say more than a configuration means: dates and timestamps, sets, binary data,
    and aliases that make a value contain itself or expand enormously. Each raises
    :class:`ConfigError` naming the dotted key ``path`` (``where`` adds, say, the file).
    """
    budget = [MAX_PLAIN_NODES]

    def check(node: Any, key: str, parents: tuple[int, ...]) -> None:
        field = key or "config"
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError(
                field,
                "...",
                f"makes the configuration too large (over {MAX_PLAIN_NODES} "
                f"values once YAML aliases are expanded){where}",
            )
        if isinstance(node, (str, bool, int, float)) or node is None:
            return
        if isinstance(node, (dict, list, tuple)):
            if id(node) in parents:
                raise ConfigError(
                    field,
                    "<a value containing itself>",
                    f"{_PLAIN}; a YAML alias (*name) here refers to a value that contains "
                    f"it{where}",
                )
            inside = (*parents, id(node))
            if isinstance(node, dict):
                for name, child in node.items():
                    if not (isinstance(name, (str, bool, int, float)) or name is None):
                        raise ConfigError(field, name, f"{_PLAIN} (this key is not){where}")
                    check(child, f"{key}.{name}" if key else str(name), inside)
            else:
                for child in node:
                    check(child, key, inside)
            return
        kind = _KINDS.get(type(node), type(node).__name__)
        quote = " (quote it to keep it as text)" if isinstance(node, datetime.date) else ""
        raise ConfigError(field, node, f"{_PLAIN}; YAML read {kind} here{quote}{where}")

    try:
        check(value, path, ())
    except RecursionError:
        raise ConfigError(path or "config", "...", f"is nested too deeply{where}") from None
    return json.loads(json.dumps(value))


_KINDS = {
    datetime.date: "a date",
    datetime.datetime: "a timestamp",
    set: "a set",
    frozenset: "a set",
    bytes: "binary data",
}


def apply_overrides(
    data: Mapping[str, Any], overrides: list[str] | tuple[str, ...]
) -> dict[str, Any]:
    """Apply ``dotted.key=value`` strings to nested data (values parsed as YAML scalars)."""
    result = plain_data(dict(data), "")  # a deep copy of plain data
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError("--set", item, "expected key=value, e.g. optimizer.lr=0.01")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except (yaml.YAMLError, RecursionError):
            value = raw
        value = plain_data(value, key, f" (in --set {key}=...)")
        node = result
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts[: depth + 1]), child, "is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


def _build(cls: type, data: Any, path: str) -> Any:
    """Instantiate dataclass ``cls`` from ``data``; ``path`` is the dotted prefix for messages."""
    if not isinstance(data, Mapping):
        raise ConfigError(path or "config", data, "must be a mapping of keys to values")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    extra = {k: v for k, v in data.items() if k not in fields}
    if cls is ModelConfig:
        # A model's own options sit flat beside name/batchnorm; the model checks them.
        nested = dict(data.get("options") or {})
        nested.update(extra)
        data = {k: v for k, v in data.items() if k in fields} | {"options": nested}
    elif extra:
        key = next(iter(extra))
        raise UnknownNameError(f"{path}.{key}" if path else str(key), str(key), fields, kind="key")
    values: dict[str, Any] = {}
    for name, fld in fields.items():
        sub = f"{path}.{name}" if path else name
        if name not in data:
            continue
        check = fld.metadata.get("check")
        # Every numeric check refuses NaN, so probing with it yields the rule in words.
        rule = (check(math.nan) or "") if check is not None and _is_float(hints[name]) else ""
        value = coerce(hints[name], data[name], sub, rule)
        if check is not None and value is not None:
            problem = check(value)
            if problem:
                raise ConfigError(sub, data[name], problem)
        values[name] = value
    return cls(**values)


def coerce(tp: Any, value: Any, path: str, rule: str = "") -> Any:
    """Check ``value`` against the annotation ``tp`` and convert where it is lossless; a
    mismatch raises :class:`ConfigError` naming ``path``.

    A ``float`` must be finite (NaN and infinities are refused: NaN slips through every range
    comparison). ``rule`` is the field's range in words ("must be > 0"), added to that
    message so it says everything that is allowed.
    """
    origin = get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return coerce(inner, value, path, rule)
    if origin is Literal:
        allowed = get_args(tp)
        # Same type as well as equal: 1 == True, but 1 is not the YAML value true.
        if any(type(value) is type(c) and value == c for c in allowed):
            return value
        if any(isinstance(c, bool) for c in allowed):  # true/false/...: no "did you mean"
            words = [str(c).lower() if isinstance(c, bool) else str(c) for c in allowed]
            raise ConfigError(path, value, f"must be {', '.join(words[:-1])} or {words[-1]}")
        raise UnknownNameError(path, str(value), [str(c) for c in allowed], kind="value")
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(path, value, "must be a mapping")
        return dict(value)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(path, value, "must be a list, e.g. [a, b] (or [] for none)")
        (inner,) = get_args(tp)
        return [coerce(inner, item, f"{path}[{i}]", rule) for i, item in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(path, value, "must be true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(path, value, "must be an integer")
    if tp is float:
        number = _as_float(value)
        if number is None:
            raise ConfigError(path, value, "must be a number")
        # NaN compares false with every bound, so range checks alone would let it through.
        if not math.isfinite(number):
            raise ConfigError(path, value, finite_rule(rule))
        return number
    if tp is str:
        if isinstance(value, str) and value:
            return value
        raise ConfigError(path, value, "must be a non-empty string")
    raise TypeError(f"unsupported annotation {tp!r} at {path}")  # a bug in this module


def finite_rule(rule: str = "") -> str:
    """What a float field allows, in words: finite, and ``rule`` (its range) if any."""
    if not rule:
        return "must be a finite number"
    return f"must be a finite number, and {rule.removeprefix('must ')}"


def _is_float(tp: Any) -> bool:
    """Whether the annotation ``tp`` is ``float`` or an optional ``float``."""
    return tp is float or float in get_args(tp)


def _as_float(value: Any) -> float | None:
    """``value`` as a float (an int, a float or a numeric string), else ``None``.

    An integer too large for a float becomes ``inf`` (and is then refused as non-finite).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.inf
    if isinstance(value, float):
        return value
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------------------------------------
# Writing


def to_dict(config: RunConfig) -> dict[str, Any]:
    """Plain nested data for YAML/JSON; model options are written flat under ``model``."""
    data = dataclasses.asdict(config)
    options = data["model"].pop("options")
    data["model"].update(options)
    return data


def to_yaml(config: RunConfig) -> str:
    """The resolved configuration as YAML (stable key order, as declared)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


#: Top-level keys that say where a run is recorded, not what it computes: left out of
#: :func:`config_hash`, so adding a tracker never makes a run folder un-resumable, nor makes
#: ``evaluate`` retrain a finished run.
UNHASHED = ("log",)


def config_hash(config: RunConfig) -> str:
    """A stable SHA-256 of the resolved configuration (what a run's results depend on; the
    :data:`UNHASHED` keys are left out)."""
    data = {k: v for k, v in to_dict(config).items() if k not in UNHASHED}
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def describe_fields(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, description) for every field, for docs and ``--help``."""
    rows: list[tuple[str, Any, str]] = []
    instance = cls()
    for fld in dataclasses.fields(cls):
        key = f"{prefix}{fld.name}"
        value = getattr(instance, fld.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe_fields(type(value), f"{key}."))
        else:
            rows.append((key, value, fld.metadata.get("doc", "")))
    return rows
