"""User datasets named ``package.module:function``.

**This runs the user's code.** ``data.name=package.module:function`` imports ``package.module``
(executing its top-level code) and calls ``function()`` in the dicelab process, with the same
rights as dicelab itself; name only modules you trust, exactly as you would before running them
with ``python``. A configuration file or a search storage that names such a dataset therefore
runs that code wherever the configuration is used.

The function takes no arguments and returns the official train and test sets, either as a
dict with keys ``x_train, y_train, x_test, y_test`` (and optionally ``num_classes``) or as a
4-tuple in that order, each a torch tensor or a numpy array. Inputs are ``uint8`` images
(scaled by :func:`to_float`) or finite floats (used as they are); labels are integers
``0 .. K-1``. The number of classes ``K`` is ``num_classes`` when given, else the largest label
plus one; labels that leave most of ``0 .. K-1`` without an example (say ``0, 1, 1000000``) are
refused rather than turned into an absurdly wide model: remap them to ``0 .. K-1`` or give
``num_classes``.

Whatever goes wrong (the import fails, the function raises or calls ``sys.exit``, or returns
something else) is a :class:`~dicelab.exceptions.ConfigError` on ``data.name`` saying what.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch

from dicelab.data.core import RawData, Split
from dicelab.exceptions import ConfigError, failure_words
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
            missing, raises, exits, or its result is not the expected arrays.
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
    except (Exception, SystemExit) as exc:  # the module's own top-level code failed
        raise ConfigError(
            FIELD, spec, f"expected an importable module; importing it {failure_words(exc)}"
        ) from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(
            FIELD, spec, f"expected module {module_name!r} to define a function {function_name!r}"
        )
    try:
        with preserved_host_rng(), torch.random.fork_rng(devices=[]):
            result = function()
    except (Exception, SystemExit) as exc:  # user code: report it, never a traceback
        raise ConfigError(
            FIELD, spec, f"expected the function to return the data; it {failure_words(exc)}"
        ) from exc
    arrays, declared = _unpack(spec, result)
    x_train, y_train, x_test, y_test = (
        _tensor(spec, key, value) for key, value in zip(KEYS, arrays, strict=True)
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
    num_classes = _num_classes(spec, torch.cat([train.y, test.y]), declared)
    return RawData(train=train, test=test, num_classes=num_classes)


def _num_classes(spec: str, labels: torch.Tensor, declared: object) -> int:
    """The class count: ``declared`` if given (checked), else the largest label plus one,
    refused when most of ``0 .. max`` has no example (labels that are not class indices)."""
    largest = int(labels.max())
    present = int(torch.unique(labels).numel())
    if declared is not None:
        if isinstance(declared, bool) or not isinstance(declared, (int, np.integer)):
            raise ConfigError(
                FIELD, spec, f"expected num_classes to be an integer; got {declared!r}"
            )
        if declared <= largest:
            raise ConfigError(
                FIELD,
                spec,
                f"expected num_classes above every label; got num_classes={int(declared)} "
                f"and a label {largest}",
            )
        return int(declared)
    if present * 2 < largest + 1:
        raise ConfigError(
            FIELD,
            spec,
            f"expected labels 0..K-1 (class indices); got {present} distinct labels up to "
            f"{largest}, which would make {largest + 1} classes, most without an example",
            hint="Remap the labels to 0..K-1 (e.g. with numpy.unique(y, return_inverse=True)), "
            "or return num_classes in the dict.",
        )
    return largest + 1


def _unpack(spec: str, result: object) -> tuple[tuple[object, ...], object]:
    """The four arrays, and the declared ``num_classes`` (``None`` when not given)."""
    if isinstance(result, dict):
        if set(result) - {"num_classes"} != set(KEYS):
            raise ConfigError(
                FIELD,
                spec,
                f"expected the function to return {_RETURNS}; got a dict with "
                f"keys {sorted(map(str, result))}",
            )
        return tuple(result[key] for key in KEYS), result.get("num_classes")
    if isinstance(result, (tuple, list)) and len(result) == len(KEYS):
        return tuple(result), None
    raise ConfigError(
        FIELD, spec, f"expected the function to return {_RETURNS}; got {type(result).__name__}"
    )


def _tensor(spec: str, key: str, value: object) -> torch.Tensor:
    if isinstance(value, torch.Tensor) and value.layout == torch.strided:
        return value.detach().cpu()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        # A copy in native byte order: torch cannot wrap big-endian arrays.
        native = value.astype(value.dtype.newbyteorder("="), copy=True)
        try:
            return torch.from_numpy(np.ascontiguousarray(native))
        except TypeError as exc:  # a dtype torch lacks
            raise ConfigError(
                FIELD, spec, f"expected {key} in a dtype torch supports; got {value.dtype}"
            ) from exc
    raise ConfigError(
        FIELD,
        spec,
        f"expected {key} to be a dense torch tensor or a numeric numpy array; got "
        f"{type(value).__name__}",
    )


def _split(spec: str, part: str, x: torch.Tensor, y: torch.Tensor) -> Split:
    """``x`` as uint8 or float32 and ``y`` as int64, after checking them."""
    if x.ndim < 2 or len(x) == 0 or x[0].numel() == 0:
        raise ConfigError(
            FIELD,
            spec,
            f"expected x_{part} to hold one or more non-empty examples (N, ...); got shape "
            f"{tuple(x.shape)}",
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
