"""The model registry, the BatchNorm presets and small checks shared by the model modules.

Every model class is its own builder: it takes the keyword arguments ``input_shape``,
``num_classes``, ``bn_momentum`` and ``bn_eps`` that :func:`dicelab.models.build_model`
supplies, plus its options (keyword parameters with defaults and type annotations, which
``build_model`` uses to check configuration values before construction).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.registry import Registry


@dataclass(frozen=True)
class ModelInfo:
    """A registered model.

    Attributes:
        name: the name a configuration uses (``model.name``).
        description: one line for ``dicelab list models``.
        builder: ``builder(*, input_shape, num_classes, bn_momentum, bn_eps, **options)``
            returning the network.
    """

    name: str
    description: str
    builder: Callable[..., nn.Module]


MODELS: Registry[ModelInfo] = Registry("model", "model.name")

#: ``(momentum, eps)`` of every BatchNorm layer, momentum in PyTorch's convention (the weight
#: of the newest batch). Keras' default momentum 0.99 weights the old estimate, i.e. 0.01 here.
BATCHNORM_PRESETS: dict[str, tuple[float, float]] = {
    "pytorch": (0.1, 1e-5),
    "keras": (0.01, 1e-3),
}

BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])


def register_model(name: str, description: str) -> Callable[[BuilderT], BuilderT]:
    """Decorator that registers a builder (usually a model class) under ``name``."""

    def add(builder: BuilderT) -> BuilderT:
        MODELS.register(name)(ModelInfo(name, description, builder))
        return builder

    return add


def require_at_least(option: str, value: int, minimum: int) -> None:
    """Raise :class:`ConfigError` on ``model.<option>`` unless ``value >= minimum``."""
    if value < minimum:
        raise ConfigError(f"model.{option}", value, f"expected an integer ≥ {minimum}")


def input_rank_error(model: str, expected: str, input_shape: Sequence[int]) -> ConfigError:
    """The error for data whose per-example shape ``model`` cannot take.

    The field is ``model.name``: the fix is choosing a model that suits the data.
    """
    return ConfigError(
        "model.name",
        model,
        f"this model needs inputs of shape {expected}",
        hint=f"The data's inputs have shape {tuple(input_shape)}.",
    )


def image_shape(model: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(channels, height, width)`` of an image input; raises for any other rank."""
    if len(input_shape) != 3:
        raise input_rank_error(model, "(channels, height, width)", input_shape)
    channels, height, width = (int(d) for d in input_shape)
    return channels, height, width
