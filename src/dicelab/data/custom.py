"""User datasets named ``package.module:function``.

The function takes no arguments and returns the official train and test sets, either as a
dict with keys ``x_train, y_train, x_test, y_test`` or as a 4-tuple in that order, each a
torch tensor or a numpy array. Inputs are ``uint8`` images (scaled by :func:`to_float`) or
floats (used as they are); labels are non-negative integers, and the number of classes is the
largest label plus one.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch

from dicelab.data.core import RawData, Split
from dicelab.exceptions import ConfigError
from dicelab.rng import preserved_host_rng

FIELD = "data.name"
KEYS = ("x_train", "y_train", "x_test", "y_test")
_RETURNS = "a dict with keys x_train, y_train, x_test, y_test, or a 4-tuple in that order"


def load_custom(spec: str) -> RawData:
    """Import ``module``, call ``function()`` and validate what it returns.

    The call runs with the global torch, NumPy and Python generators saved and restored, so a
    function that draws from them cannot shift the caller's random state.

    Raises:
        ConfigError: (field ``data.name``) the module cannot be imported, the function is
            missing, or its result is not the expected arrays.
    """
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name.isidentifier():
        raise ConfigError(FIELD, spec, "expected a dataset name or 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            FIELD, spec, f"expected an importable module before ':' ({exc})"
        ) from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(
            FIELD, spec, f"expected module {module_name!r} to define a function {function_name!r}"
        )
    with preserved_host_rng(), torch.random.fork_rng(devices=[]):
        result = function()
    x_train, y_train, x_test, y_test = (
        _tensor(spec, key, value) for key, value in zip(KEYS, _unpack(spec, result), strict=True)
    )
    train = _split(spec, "train", x_train, y_train)
    test = _split(spec, "test", x_test, y_test)
    if train.x.shape[1:] != test.x.shape[1:]:
        raise ConfigError(
            FIELD,
            spec,
            f"expected x_train and x_test to have the same per-example shape; got "
            f"{tuple(train.x.shape[1:])} and {tuple(test.x.shape[1:])}",
        )
    num_classes = int(torch.cat([train.y, test.y]).max()) + 1
    return RawData(train=train, test=test, num_classes=num_classes)


def _unpack(spec: str, result: object) -> tuple[object, ...]:
    if isinstance(result, dict):
        if set(result) != set(KEYS):
            raise ConfigError(
                FIELD,
                spec,
                f"expected the function to return {_RETURNS}; got a dict with "
                f"keys {sorted(map(str, result))}",
            )
        return tuple(result[key] for key in KEYS)
    if isinstance(result, (tuple, list)) and len(result) == len(KEYS):
        return tuple(result)
    raise ConfigError(
        FIELD, spec, f"expected the function to return {_RETURNS}; got {type(result).__name__}"
    )


def _tensor(spec: str, key: str, value: object) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(np.array(value))
    raise ConfigError(
        FIELD,
        spec,
        f"expected {key} to be a torch tensor or a numeric numpy array; got "
        f"{type(value).__name__}",
    )


def _split(spec: str, part: str, x: torch.Tensor, y: torch.Tensor) -> Split:
    """``x`` as uint8 or float32 and ``y`` as int64, after checking them."""
    if x.ndim < 2 or len(x) == 0:
        raise ConfigError(
            FIELD,
            spec,
            f"expected x_{part} to hold one or more examples (N, ...); got shape {tuple(x.shape)}",
        )
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise ConfigError(
            FIELD, spec, f"expected x_{part} to be uint8 images or floats; got {x.dtype}"
        )
    if y.ndim != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ConfigError(
            FIELD,
            spec,
            f"expected y_{part} to be a 1-D array of integer labels; got {y.dtype} "
            f"with shape {tuple(y.shape)}",
        )
    if len(y) != len(x):
        raise ConfigError(
            FIELD,
            spec,
            f"expected as many labels as examples; got {len(x)} x_{part} and {len(y)} y_{part}",
        )
    if int(y.min()) < 0:
        raise ConfigError(
            FIELD, spec, f"expected non-negative labels; y_{part} has {int(y.min())}"
        )
    x = x if x.dtype == torch.uint8 else x.to(torch.float32)
    return Split(x.contiguous(), y.to(torch.int64).contiguous())
