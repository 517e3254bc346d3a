"""The base class of every randomness technique, and the technique registry.

A technique is a small dataclass: a registry ``name``, a paper ``category``, hyperparameters
declared with :func:`dicelab.space.hp` (the default of its ``strength`` field turns it off), and
one or more hooks. The :class:`~dicelab.techniques.Injector` calls the hooks at fixed points of
a training step, in the authors' order:

====================  =========================================================================
hook                  when it is called
====================  =========================================================================
``setup``             once, after the model is built (weight init, frozen masks, label tables)
``attach``            once, after ``setup``: forward hooks on the model (MODEL stage)
``data_order``        at the start of each epoch: the example order, or ``None`` (fixed order)
``learning_rate``     at the start of each epoch: the epoch's learning rate
``batch_size``        at the start of each epoch: the epoch's batch size
``on_batch``          every step, on the float batch ``(x, y)`` before the forward pass (DATA)
``on_loss``           every step, on the per-example loss ``(B,)`` before reduction (LOSS)
``on_grads``          after ``backward()``, before the optimizer step (GRAD)
``on_weights``        after the GRAD hooks, immediately before the optimizer step (WEIGHT)
====================  =========================================================================

Every random draw comes from :meth:`BaseTechnique.rng`, the technique's own generator, so
switching one technique on or off never changes another's draws, and the global RNG is never
touched. A technique at its default (``is_noop``) is never called at all: off is exactly off.

Under torchrun (one process per rank, each on its own batches) *when* a technique draws decides
whether the ranks share the draw, so a parallel run is the same experiment as one process
taking the ranks' batches in turn:

* **replicated** (the same on every rank): draws in ``setup`` and ``attach`` (weight init,
  frozen-weight and drnn masks, the label-noise table: they define the model or the dataset,
  and replicas that drew them differently would train different networks), at the epoch start
  (``data_order``: every rank slices the same global order; the schedules draw nothing), and
  in ``on_grads`` / ``on_weights`` (gradient dropout and noise, weight noise: they act on the
  gradient every rank holds after the all-reduce and on the replicated weights, which must stay
  identical);
* **per rank** (each rank its own stream): draws made on the rank's own batch, in ``on_batch``,
  in the forward hooks ``attach`` registered and in ``on_loss`` (augmentation, input and label
  noise per example, dropout, DropConnect, activation noise, loss noise): one process would draw
  them anew for every batch, so ranks drawing the same values for different examples would not
  be that experiment.

The :class:`~dicelab.techniques.Injector` calls the replicated hooks inside
:meth:`RandomStreams.replicated <dicelab.rng.RandomStreams.replicated>`; rank 0 draws from the
same streams either way, so a one-process run is unchanged. A new technique follows the rule by
drawing in the hook that matches what the draw means.

Every hook is an identity in evaluation (``ctx.training`` false, or the module in ``eval()``
mode), except in a technique declared ``in_evaluation``: a fixed input transform such as
``normalize``, which the model needs on every input because its weights were trained on the
transformed inputs. Such a technique also attaches a forward pre-hook that applies the
transform to the inputs of evaluation passes, where the DATA stage is skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from dicelab.config import coerce
from dicelab.exceptions import ConfigError, UnknownNameError
from dicelab.registry import Registry
from dicelab.rng import RandomStreams
from dicelab.space import HParam, hparams
from dicelab.stages import Category, Context


class BaseTechnique:
    """Base class for randomness techniques; subclasses are dataclasses (see module docs).

    Class attributes a subclass sets:
        name: registry name, equal to its module's file name.
        category: the paper's category (a reporting taxonomy).
        strength: the field whose default value means "off".
        priority: order among techniques using the same hook (lower runs first); the paper's
            GRAD order is gradient dropout (10) → frozen weights (20) → gradient noise (30).
        category_verified: whether the paper itself states this category (else it follows
            the authors' code, see the docs).
        deterministic: the technique draws no random numbers (the schedules); the contract
            suite then expects equal results under different seeds.
        needs_images: the technique works on image batches ``(B, C, H, W)`` only; the
            Injector rejects it at setup when told the inputs are not images.
        in_evaluation: the technique is a fixed (``deterministic``) input transform that
            evaluation needs too (see the module docstring); the contract suite then expects
            evaluation to see the transform instead of an identity.
    """

    name: ClassVar[str]
    category: ClassVar[Category]
    strength: ClassVar[str]
    priority: ClassVar[int] = 50
    category_verified: ClassVar[bool] = False
    deterministic: ClassVar[bool] = False
    needs_images: ClassVar[bool] = False
    in_evaluation: ClassVar[bool] = False

    _streams: RandomStreams | None = None

    def __post_init__(self) -> None:
        for field, spec in hparams(self).items():
            value = getattr(self, field)
            checked = _check_type(self.name, field, spec, value)
            setattr(self, field, checked)
            problem = spec.problem(checked)
            if problem:
                raise ConfigError(f"techniques.{self.name}.{field}", value, problem)

    # -- identity and randomness ----------------------------------------------------------

    @property
    def is_noop(self) -> bool:
        """True when the strength field is at its default: the technique changes nothing."""
        spec = hparams(self)[self.strength]
        return bool(getattr(self, self.strength) == spec.default)

    def bind(self, streams: RandomStreams) -> None:
        """Give the technique the run's streams; :meth:`rng` draws from its own one."""
        self._streams = streams

    def rng(self, device: torch.device | str = "cpu") -> torch.Generator:
        """This technique's generator on ``device`` (seeded from the run seed and its name);
        under torchrun the rank's own or the shared one, by hook (see the module docs)."""
        if self._streams is None:
            self._streams = RandomStreams(0)
        return self._streams.generator(f"technique/{self.name}", device)

    def hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters and their values."""
        return {field: getattr(self, field) for field in hparams(self)}

    # -- hooks (defaults do nothing; see the module docstring for when each is called) -----

    def setup(self, model: nn.Module, ctx: Context) -> None:
        """INIT: once, after the model is built."""

    def attach(self, model: nn.Module, ctx: Context) -> list[RemovableHandle]:
        """MODEL: register forward hooks; return their handles so they can be removed."""
        return []

    def data_order(self, size: int, ctx: Context) -> torch.Tensor | None:
        """Epoch start: a permutation of ``range(size)``, or ``None`` to keep the order."""
        return None

    def learning_rate(self, lr: float, base_lr: float, ctx: Context) -> float:
        """Epoch start: the learning rate for epoch ``ctx.epoch`` (``lr`` so far)."""
        return lr

    def batch_size(self, size: int, base_size: int, ctx: Context) -> int:
        """Epoch start: the batch size for epoch ``ctx.epoch`` (``size`` so far)."""
        return size

    def on_batch(
        self, x: torch.Tensor, y: torch.Tensor, ctx: Context
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DATA: ``x`` float ``(B, ...)`` in [0, 1]; ``y`` labels ``(B,)`` or soft ``(B, K)``."""
        return x, y

    def on_loss(self, per_example: torch.Tensor, ctx: Context) -> torch.Tensor:
        """LOSS: per-example loss ``(B,)`` before reduction."""
        return per_example

    def on_grads(self, params: Sequence[nn.Parameter], ctx: Context) -> None:
        """GRAD: read and write ``p.grad`` in place."""

    def on_weights(self, params: Sequence[nn.Parameter], ctx: Context) -> None:
        """WEIGHT: write ``p`` in place, before the optimizer step."""

    # -- checkpoint state -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """State that must survive a resume (masks, tables); generators are saved apart."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


TECHNIQUES: Registry[type[BaseTechnique]] = Registry("technique", "techniques")

T = TypeVar("T", bound=type[BaseTechnique])

_HOOKS = (
    "setup",
    "attach",
    "data_order",
    "learning_rate",
    "batch_size",
    "on_batch",
    "on_loss",
    "on_grads",
    "on_weights",
)


def register_technique(cls: T) -> T:
    """Class decorator: check the declaration and register the technique under ``cls.name``.

    Mistakes in a technique's declaration fail at import, not in the middle of a study.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a dataclass")
    specs = hparams(cls)
    if getattr(cls, "strength", None) not in specs:
        raise TypeError(f"{cls.__name__}.strength must name one of its hp() fields: {specs}")
    if not any(getattr(cls, hook) is not getattr(BaseTechnique, hook) for hook in _HOOKS):
        raise TypeError(f"{cls.__name__} overrides no hook")
    if cls.in_evaluation and not cls.deterministic:
        raise TypeError(f"{cls.__name__} acts in evaluation, so it must be deterministic")
    for field, spec in specs.items():
        if spec.problem(spec.default):
            raise TypeError(f"{cls.__name__}.{field}: default {spec.default!r} is not valid")
    TECHNIQUES.register(cls.name)(cls)
    return cls


def _check_type(technique: str, field: str, spec: HParam, value: Any) -> Any:
    """``value`` converted to the type of the default where lossless, else ConfigError."""
    if spec.choices is not None or not isinstance(spec.default, (bool, int, float)):
        return value
    return coerce(type(spec.default), value, f"techniques.{technique}.{field}", spec.rule())


def create_technique(name: str, params: Mapping[str, Any] | Any | None = None) -> BaseTechnique:
    """Build technique ``name``; ``params`` is a mapping of hyperparameters or, as a shorthand,
    the value of its strength field (``create_technique("dropout", 0.2)``)."""
    if name not in TECHNIQUES:
        raise UnknownNameError(f"techniques.{name}", name, TECHNIQUES.names(), kind="technique")
    cls = TECHNIQUES.get(name)
    specs = hparams(cls)
    if params is None:
        params = {}
    elif not isinstance(params, Mapping):
        params = {cls.strength: params}
    for key in params:
        if key not in specs:
            raise UnknownNameError(
                f"techniques.{name}.{key}", str(key), specs, kind=f"hyperparameter of {name}"
            )
    technique: BaseTechnique = cls(**params)
    return technique


def mid_range(cls: type[BaseTechnique]) -> BaseTechnique:
    """An instance with the strength field at a typical "on" value: the middle of its search
    range (geometric middle on a log scale; three quarters if the middle is the off value),
    the first non-default choice, or ``True``. Used by the contract suite and benchmarks."""
    spec = hparams(cls)[cls.strength]
    if spec.choices is not None:
        value: Any = next(c for c in spec.choices if c != spec.default)
    elif isinstance(spec.default, bool):
        value = not spec.default
    elif spec.search is None:
        raise ValueError(f"{cls.name}.{cls.strength} declares no search range")
    else:
        low, high = spec.search
        value = (low * high) ** 0.5 if spec.log else (low + high) / 2
        if value == spec.default:
            value = low + 0.75 * (high - low)
        if isinstance(spec.default, int):
            value = round(value)
    return cls(**{cls.strength: value})


def list_techniques() -> list[type[BaseTechnique]]:
    """Registered technique classes, in catalog order (category, then name)."""
    order = list(Category)
    classes = [TECHNIQUES.get(n) for n in TECHNIQUES.names()]
    return sorted(classes, key=lambda c: (order.index(c.category), c.name))
