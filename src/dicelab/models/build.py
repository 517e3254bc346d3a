"""Building a model from its configuration: name, BatchNorm preset and checked options."""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable, Collection, Mapping

import torch
from torch import nn

from dicelab.config import coerce
from dicelab.exceptions import ConfigError, UnknownNameError, failure_words
from dicelab.models.base import BATCHNORM_PRESETS, MODELS, ModelInfo

#: Arguments ``build_model`` itself passes to a registered builder; never options.
_BUILDER_ARGS = frozenset({"input_shape", "num_classes", "bn_momentum", "bn_eps"})
#: Arguments passed to a custom ``module:function`` model.
_CUSTOM_ARGS = frozenset({"input_shape", "num_classes"})
_CUSTOM_EXPECTED = "expected 'package.module:function' naming a function that returns an nn.Module"


def list_models() -> list[ModelInfo]:
    """The registered models, sorted by name."""
    return [MODELS.get(name) for name in MODELS.names()]


def build_model(
    name: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    batchnorm: str = "pytorch",
    options: Mapping[str, object] | None = None,
) -> nn.Module:
    """Construct the model ``name`` for inputs ``(B, *input_shape)`` and ``num_classes`` logits.

    Options are checked before construction: each must be a keyword parameter of the builder
    and match its annotation (``int`` excludes ``bool``; a ``float`` accepts an ``int``;
    ``tuple[int, ...]``/``list[int]`` accept a list or tuple of integers). Ranges are checked
    by the builders. Initial weights come from torch's global RNG; the caller seeds it.

    A ``name`` with a colon, ``package.module:function``, is a custom model: the function is
    imported and called as ``function(input_shape=..., num_classes=..., **options)``; its
    options are checked the same way as far as its signature and annotations allow. It does
    not receive the BatchNorm preset.

    Args:
        name: a registered model (see :func:`list_models`) or ``package.module:function``.
        input_shape: shape of one example, e.g. ``(1, 28, 28)``.
        num_classes: number of logits (the model outputs no softmax).
        batchnorm: a key of :data:`BATCHNORM_PRESETS`.
        options: model options (``model.<option>`` in configurations).

    Returns:
        The model, with PyTorch's default initialisation, in training mode.

    Raises:
        UnknownNameError: unknown model, preset or option (with a suggestion for near misses).
        ConfigError: an option has the wrong type or range, or a custom model cannot be
            imported or does not return an ``nn.Module``.
    """
    if not isinstance(batchnorm, str) or batchnorm not in BATCHNORM_PRESETS:
        raise UnknownNameError(
            "model.batchnorm", str(batchnorm), BATCHNORM_PRESETS, "BatchNorm preset"
        )
    shape = tuple(int(d) for d in input_shape)
    options = dict(options or {})
    if ":" in name:
        return _build_custom(name, shape, num_classes, options)
    builder = MODELS.get(name).builder
    momentum, eps = BATCHNORM_PRESETS[batchnorm]
    kwargs = _checked_options(name, builder, options, _BUILDER_ARGS)
    return builder(
        input_shape=shape, num_classes=num_classes, bn_momentum=momentum, bn_eps=eps, **kwargs
    )


def resolve_options(name: str, options: Mapping[str, object] | None = None) -> dict[str, object]:
    """The options of model ``name`` checked, with every default the model has filled in.

    A run's resolved configuration records these, so that it stays exact if a default
    changes. A custom ``module:function`` model is imported only when built; its options
    are returned as given.
    """
    options = dict(options or {})
    if ":" in name:
        return options
    builder = MODELS.get(name).builder
    checked = _checked_options(name, builder, options, _BUILDER_ARGS)
    signature = _signature(builder)
    defaults = {
        p.name: p.default
        for p in (signature.parameters.values() if signature is not None else ())
        if p.name not in _BUILDER_ARGS and p.default is not inspect.Parameter.empty
    }
    return defaults | checked


def _build_custom(
    spec: str, input_shape: tuple[int, ...], num_classes: int, options: dict[str, object]
) -> nn.Module:
    """Import ``package.module:function`` and call it; the result must be an ``nn.Module``."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError("model.name", spec, _CUSTOM_EXPECTED)
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            "model.name", spec, _CUSTOM_EXPECTED, hint=f"Cannot import {module_name!r}: {exc}."
        ) from exc
    except (Exception, SystemExit) as exc:  # the module's own top-level code failed
        hint = f"Importing {module_name!r} {failure_words(exc)}."
        raise ConfigError("model.name", spec, _CUSTOM_EXPECTED, hint=hint) from exc
    try:
        for part in attribute.split("."):
            target = getattr(target, part)
    except AttributeError:
        raise ConfigError(
            "model.name", spec, _CUSTOM_EXPECTED, hint=f"{module_name!r} has no {attribute!r}."
        ) from None
    if not callable(target):
        raise ConfigError(
            "model.name", spec, _CUSTOM_EXPECTED, hint=f"{attribute!r} is not callable."
        )
    kwargs = _checked_options(spec, target, options, _CUSTOM_ARGS)
    signature = _signature(target)
    if signature is not None:
        try:
            signature.bind(input_shape=input_shape, num_classes=num_classes, **kwargs)
        except TypeError as exc:
            raise ConfigError(
                "model.name",
                spec,
                "expected a function callable as f(input_shape=..., num_classes=..., **options)",
                hint=f"{exc}.",
            ) from exc
    try:
        model = target(input_shape=input_shape, num_classes=num_classes, **kwargs)
    except (Exception, SystemExit) as exc:  # user code: report it, never a traceback
        raise ConfigError(
            "model.name", spec, _CUSTOM_EXPECTED, hint=f"It {failure_words(exc)}."
        ) from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(
            "model.name", spec, _CUSTOM_EXPECTED, hint=f"It returned a {type(model).__name__}."
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(
            "model.name", spec, "expected a model with trainable parameters; it has none"
        )
    _dry_run(spec, model, input_shape, num_classes)
    return model


def _dry_run(spec: str, model: nn.Module, input_shape: tuple[int, ...], num_classes: int) -> None:
    """One forward pass of a custom model on one all-zero example, to fail at build time
    (with a message) rather than mid-run (with a traceback) when it cannot train here.

    The pass runs in eval mode (BatchNorm statistics are not updated) without autograd, and
    torch's global generator is restored afterwards, so training from here on is exactly as
    without it.
    """
    was_training = model.training
    model.eval()
    example = torch.zeros(1, *input_shape)
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            output = model(example)
    except (Exception, SystemExit) as exc:
        raise ConfigError(
            "model.name",
            spec,
            f"expected a model that accepts inputs of shape (N, {_dims(input_shape)}); its "
            f"first forward pass on one example {failure_words(exc)}",
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor):
        raise ConfigError(
            "model.name",
            spec,
            f"expected a model that returns one tensor of logits; it returns a "
            f"{type(output).__name__}",
        )
    if tuple(output.shape) != (1, num_classes):
        raise ConfigError(
            "model.name",
            spec,
            f"returns outputs of shape {tuple(output.shape)}; expected (N, {num_classes}) for "
            f"this dataset's {num_classes} classes",
        )
    if not output.is_floating_point():
        raise ConfigError(
            "model.name", spec, f"returns {output.dtype} outputs; expected floating-point logits"
        )


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(str(d) for d in shape)


def _signature(builder: Callable[..., object]) -> inspect.Signature | None:
    """The builder's signature, or ``None`` where Python cannot tell (some C callables)."""
    try:
        return inspect.signature(builder)
    except (TypeError, ValueError):
        return None


def _checked_options(
    model: str,
    builder: Callable[..., object],
    options: Mapping[str, object],
    passed: Collection[str],
) -> dict[str, object]:
    """``options`` checked against ``builder``'s keyword parameters and their annotations.

    Args:
        model: the model's name, for messages.
        builder: the callable that will receive the options.
        options: the options from the configuration.
        passed: arguments the caller passes itself; they are never options.

    Returns:
        The options, floats converted to ``float`` and integer lists to the annotated type.
    """
    signature = _signature(builder)
    allowed: list[str] = []
    takes_any = signature is None
    if signature is not None:
        for parameter in signature.parameters.values():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                takes_any = True
            elif (
                parameter.kind
                in (
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    inspect.Parameter.KEYWORD_ONLY,
                )
                and parameter.name not in passed
            ):
                allowed.append(parameter.name)
    for key in options:
        if key in passed or not (takes_any or key in allowed):
            raise UnknownNameError(f"model.{key}", str(key), allowed, f"option of model {model!r}")
    hints = _type_hints(builder)
    return {
        key: _check_type(f"model.{key}", value, hints.get(key)) for key, value in options.items()
    }


def _type_hints(builder: Callable[..., object]) -> dict[str, object]:
    """Resolved annotations of the builder (of its ``__init__`` if a class); may be empty."""
    target = builder.__init__ if inspect.isclass(builder) else builder
    try:
        return typing.get_type_hints(target)
    except Exception:  # annotations naming something undefined: leave the values unchecked
        return {}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_type(field: str, value: object, hint: object) -> object:
    """``value`` if it fits the annotation ``hint`` (converted where lossless), else raise.

    ``bool``, ``int``, ``float`` (finite) and ``str`` are checked by the configuration's own
    :func:`~dicelab.config.coerce`, so a model option obeys the same rules and messages as
    every other field; ``tuple[int, ...]`` and ``list[int]`` are checked here. Values for any
    other annotation pass unchecked.
    """
    if hint in (bool, int, float, str):
        return coerce(hint, value, field)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if (origin is tuple and args == (int, ...)) or (origin is list and args == (int,)):
        if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
            raise ConfigError(field, value, "expected a list of integers")
        return origin(value)
    return value
