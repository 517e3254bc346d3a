"""Loss landscapes around a trained model: 1-D and 2-D slices and linear interpolation.

A slice evaluates the loss (and accuracy) at ``θ + α·d₁`` (1-D) or ``θ + α·d₁ + β·d₂`` (2-D)
on a grid of coefficients, where ``θ`` are the trained weights and ``d`` random directions
with *filter normalisation* (Li et al. 2018): each filter of a direction is rescaled to the
norm of the same filter of the weights, so that distances mean the same for every layer
whatever its scale (a network with BatchNorm is invariant to the scale of its filters, and
an unnormalised direction would move small-norm layers relatively much further).
:func:`interpolate` evaluates ``(1 − t)·θa + t·θb`` between two whole states.

Conventions, shared with :mod:`dicelab.analysis.hessian`:

- ``batches`` is an iterable of ``(inputs, targets)`` pairs, read once and kept on the model's
  device; the loss is the example-weighted mean ``Σ_b n_b·loss_fn(logits_b, y_b) / Σ_b n_b``
  of ``loss_fn``'s batch means. The accuracy (fraction of ``argmax(logits) == targets``) is
  reported when the logits are ``(B, K)`` and the targets ``(B,)`` integer labels, else it is
  ``None``.
- Only the trainable parameters (``requires_grad``) are moved by slices; directions are lists
  of tensors shaped like them, in ``model.parameters()`` order.
- The model runs in ``eval()`` mode (BatchNorm uses running statistics) and each module's
  train/eval flag is restored. Grid points are evaluated with ``torch.func.functional_call``,
  which substitutes the weights for the duration of a call, so the model's own tensors are
  never written: they are bit-identical afterwards, even if evaluation fails half-way.
- Random directions come from a ``torch.Generator`` seeded with ``derive_seed(seed, ...)``,
  drawn on the CPU, so a seed gives the same direction on every device; the global RNG is
  never used.

Batched evaluation: with ``vectorize=True`` grid points are evaluated ``chunk_size`` at a time
by ``torch.func.vmap`` over stacked weight sets (one batched forward per chunk and batch).
That pays off where per-call overhead dominates, i.e. small models on a GPU: a 21×21 grid of
dicelab's VGG (width 8, 24k parameters) on 500 8×8 inputs took 0.72 s as a loop on an H200,
0.25 s with vmap in chunks of 16 and 0.07 s in chunks of 64. On the CPU it does not pay:
convolutions there are compute-bound and vmap turns BatchNorm into slower elementwise ops, so
a plain loop was as fast or faster (same grid, one thread: loop 2.3-2.9 s, vmap 3.4-3.9 s; a
64-64-64-10 MLP: loop 0.15 s, vmap 0.3 s). Hence the default ``vectorize=None``: vmap on
accelerators, the loop on the CPU. ``chunk_size`` (16) is a memory bound: a chunk holds the
activations of that many models at once, so raise it for small models on a large GPU. When
vmap cannot run the model (Python control flow on tensor values, ``.item()``, in-place
updates of captured tensors, an operator without a batching rule), evaluation warns once and
falls back to the loop.

References:
    Li, Xu, Taylor, Studer & Goldstein, Visualizing the Loss Landscape of Neural Nets, NeurIPS
    2018, arXiv 1712.09913 (code: tomgoldstein/loss-landscape).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn
from torch.func import functional_call, vmap

from dicelab.analysis._common import Batch, check_int, checked_batches, eval_mode, trainable
from dicelab.analysis.hessian import LossFn
from dicelab.exceptions import ConfigError
from dicelab.rng import derive_seed

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "Landscape1D",
    "Landscape2D",
    "from_dict",
    "interpolate",
    "plot_1d",
    "plot_2d",
    "random_direction",
    "slice_1d",
    "slice_2d",
]

Ignore = Literal["biasbn", "none"]
Norm = Literal["filter", "layer", "none"]
IGNORE_CHOICES: tuple[Ignore, ...] = ("biasbn", "none")
NORM_CHOICES: tuple[Norm, ...] = ("filter", "layer", "none")

#: Added to a direction's norm before dividing by it (loss-landscape's constant).
_EPS = 1e-10
_LABEL_1 = "α (filter-normalised direction 1)"
_LABEL_2 = "β (filter-normalised direction 2)"
_LABEL_T = "t (θ = (1 − t)·θa + t·θb)"


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Landscape1D:
    """Loss (and accuracy) along a line of parameter space.

    Attributes:
        alphas: the coefficients, ascending (``α`` of a slice, ``t`` of an interpolation).
        losses: the mean loss at each coefficient.
        accuracies: the accuracy at each coefficient, or ``None`` when the task is not
            classification with integer labels.
        xlabel: what the coefficient is, for plots.
        title: a plot title.
    """

    alphas: list[float]
    losses: list[float]
    accuracies: list[float] | None
    xlabel: str = _LABEL_1
    title: str = "Loss along a random direction"

    def to_dict(self) -> dict[str, object]:
        """The landscape as JSON-ready builtins."""
        return {
            "alphas": list(self.alphas),
            "losses": _json_numbers(self.losses),
            "accuracies": None if self.accuracies is None else _json_numbers(self.accuracies),
            "xlabel": self.xlabel,
            "title": self.title,
        }


@dataclass(frozen=True)
class Landscape2D:
    """Loss (and accuracy) on a plane of parameter space.

    Attributes:
        alphas: coefficients of direction 1, ascending.
        betas: coefficients of direction 2, ascending.
        losses: ``losses[i][j]`` is the loss at ``(alphas[i], betas[j])``.
        accuracies: the same grid of accuracies, or ``None`` (see :class:`Landscape1D`).
        xlabel: what ``alphas`` are, for plots.
        ylabel: what ``betas`` are, for plots.
        title: a plot title.
    """

    alphas: list[float]
    betas: list[float]
    losses: list[list[float]]
    accuracies: list[list[float]] | None
    xlabel: str = _LABEL_1
    ylabel: str = _LABEL_2
    title: str = "Loss on a random plane"

    def to_dict(self) -> dict[str, object]:
        """The landscape as JSON-ready builtins."""
        return {
            "alphas": list(self.alphas),
            "betas": list(self.betas),
            "losses": [_json_numbers(row) for row in self.losses],
            "accuracies": None
            if self.accuracies is None
            else [_json_numbers(row) for row in self.accuracies],
            "xlabel": self.xlabel,
            "ylabel": self.ylabel,
            "title": self.title,
        }


def from_dict(data: Mapping[str, object]) -> Landscape1D | Landscape2D:
    """A landscape back from its ``to_dict()`` (e.g. read from JSON): a :class:`Landscape2D`
    when ``data`` has ``betas``, else a :class:`Landscape1D`.

    Raises:
        ConfigError: ``data`` is not a landscape's ``to_dict()``.

    Example:
        >>> line = Landscape1D([0.0, 1.0], [1.0, 2.0], None)
        >>> from_dict(line.to_dict()) == line
        True
    """
    try:
        accuracies = data.get("accuracies")
        if data.get("betas") is not None:
            return Landscape2D(
                _floats(data["alphas"]),
                _floats(data["betas"]),
                _rows(data["losses"]),
                None if accuracies is None else _rows(accuracies),
                xlabel=str(data.get("xlabel", _LABEL_1)),
                ylabel=str(data.get("ylabel", _LABEL_2)),
                title=str(data.get("title", Landscape2D.title)),
            )
        return Landscape1D(
            _floats(data["alphas"]),
            _floats(data["losses"]),
            None if accuracies is None else _floats(accuracies),
            xlabel=str(data.get("xlabel", _LABEL_1)),
            title=str(data.get("title", Landscape1D.title)),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ConfigError(
            "landscape", type(data).__name__, f"must be a landscape's to_dict() ({err!r})"
        ) from None


def _json_numbers(values: Sequence[float]) -> list[float | None]:
    """Numbers for strict JSON: a NaN or infinite loss (a point where the network blows up,
    say far outside an interpolation) becomes ``None``."""
    return [float(v) if math.isfinite(v) else None for v in values]


def _floats(value: object) -> list[float]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"expected a list of numbers, got {type(value).__name__}")
    out: list[float] = []
    for v in value:
        if v is None:  # written for a non-finite value by to_dict
            out.append(math.nan)
            continue
        if not isinstance(v, (int, float)):
            raise TypeError(f"expected a number, got {type(v).__name__}")
        out.append(float(v))
    return out


def _rows(value: object) -> list[list[float]]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"expected a list of rows, got {type(value).__name__}")
    return [_floats(row) for row in value]


# --- directions ------------------------------------------------------------------------------


def random_direction(
    model: nn.Module,
    *,
    seed: int,
    ignore: Ignore = "biasbn",
    norm: Norm = "filter",
) -> list[torch.Tensor]:
    """A Gaussian direction in the trainable parameters, normalised to the weights' scale.

    Each entry is drawn from N(0, 1) (in float32 on the CPU, then moved to the parameter's
    device and dtype), then rescaled per ``norm``:

    - ``"filter"``: for a parameter with 2 or more dimensions, each filter ``f`` (a slice along
      dim 0: an output channel of a convolution, an output unit of a linear layer) becomes
      ``d_f ← d_f·‖w_f‖ / (‖d_f‖ + 1e-10)``;
    - ``"layer"``: the whole tensor becomes ``d ← d·‖w‖ / (‖d‖ + 1e-10)``;
    - ``"none"``: the raw Gaussian.

    Parameters with at most one dimension (biases, BatchNorm γ and β) get a zero direction
    with ``ignore="biasbn"`` (the default, as in loss-landscape's ``--xignore biasbn``): the
    slice then moves only the weights. With ``ignore="none"`` they are normalised as one
    filter (``"filter"``/``"layer"``) or left raw (``"none"``). (loss-landscape instead sets
    such a direction to a copy of the weights when it does not ignore them.)

    Args:
        model: the network whose trainable parameters set shapes and norms.
        seed: seed of the direction; the same seed gives the same direction.
        ignore: ``"biasbn"`` or ``"none"``.
        norm: ``"filter"``, ``"layer"`` or ``"none"``.

    Returns:
        One tensor per trainable parameter, shaped like it.

    Raises:
        ConfigError: unknown ``ignore`` or ``norm``.

    Example:
        >>> model = torch.nn.Linear(3, 2)
        >>> d = random_direction(model, seed=0)
        >>> torch.allclose(d[0].norm(dim=1), model.weight.norm(dim=1)), bool((d[1] == 0).all())
        (True, True)
    """
    if ignore not in IGNORE_CHOICES:
        raise ConfigError("ignore", ignore, f"must be one of {', '.join(IGNORE_CHOICES)}")
    if norm not in NORM_CHOICES:
        raise ConfigError("norm", norm, f"must be one of {', '.join(NORM_CHOICES)}")
    gen = torch.Generator().manual_seed(derive_seed(int(seed), "landscape", "direction"))
    out: list[torch.Tensor] = []
    for _, p in trainable(model):
        d = torch.randn(p.shape, generator=gen, dtype=torch.float32)
        w = p.detach().to("cpu", torch.float32)
        if p.dim() <= 1 and ignore == "biasbn":
            d = torch.zeros_like(d)
        elif norm == "filter" and p.dim() > 1:
            d_rows, w_rows = d.reshape(len(d), -1), w.reshape(len(w), -1)
            scale = w_rows.norm(dim=1) / (d_rows.norm(dim=1) + _EPS)
            d = (d_rows * scale[:, None]).reshape(p.shape)
        elif norm != "none":
            d = d * (w.norm() / (d.norm() + _EPS))
        out.append(d.to(device=p.device, dtype=p.dtype))
    return out


# --- evaluation ------------------------------------------------------------------------------


class _Evaluator:
    """Loss and accuracy at points ``Σ_k c_k·T_k`` of the model's state.

    ``terms`` are dicts from state names to tensors (all with the same names); a point's value
    of each named tensor is ``Σ_k coefs[point, k]·terms[k][name]``. Names not in the terms
    come from ``fixed``, then from the model itself.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: list[Batch],
        fixed: Mapping[str, torch.Tensor],
        *,
        vectorize: bool,
        chunk_size: int,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.batches = batches
        self.fixed = dict(fixed)
        self.vectorize = vectorize
        self.chunk_size = chunk_size
        self.total = sum(len(x) for x, _ in batches)

    def _forward(self, state: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """Logits ``(C, B, ...)`` for a chunk of ``C`` stacked states."""
        if self.vectorize:

            def one(point: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
                return functional_call(self.model, (point, self.fixed), (x,))

            try:
                return vmap(one, in_dims=(0, None))(state, inputs)
            except Exception as err:  # any failure to batch: the loop below still works
                self.vectorize = False
                warnings.warn(
                    "Loss landscape: torch.func.vmap cannot evaluate this model "
                    f"({type(err).__name__}: {err}); evaluating grid points one by one.",
                    RuntimeWarning,
                    stacklevel=4,
                )
        count = len(next(iter(state.values())))
        logits = [
            functional_call(
                self.model, ({n: t[c] for n, t in state.items()}, self.fixed), (inputs,)
            )
            for c in range(count)
        ]
        return torch.stack(logits)

    def __call__(
        self, terms: Sequence[Mapping[str, torch.Tensor]], coefs: torch.Tensor
    ) -> tuple[list[float], list[float] | None]:
        losses: list[float] = []
        correct: list[float] | None = []
        names = list(terms[0])
        with torch.no_grad():
            for start in range(0, len(coefs), self.chunk_size):
                chunk = coefs[start : start + self.chunk_size]
                state = {n: _combine([t[n] for t in terms], chunk) for n in names}
                # Sums stay on the device (float64) until the chunk ends: one sync per chunk.
                loss_sum: torch.Tensor | float = 0.0
                hits: torch.Tensor | float = 0.0
                for inputs, targets in self.batches:
                    logits = self._forward(state, inputs)
                    batch_losses = torch.stack(
                        [self.loss_fn(logits[c], targets) for c in range(len(chunk))]
                    )
                    if batch_losses.dim() != 1:
                        raise ConfigError(
                            "loss_fn",
                            f"a loss of shape {tuple(batch_losses.shape[1:])}",
                            "must return the batch's mean loss, a scalar",
                        )
                    loss_sum = loss_sum + batch_losses.double() * len(inputs)
                    if correct is not None and _is_classification(logits[0], targets):
                        hits = hits + (logits.argmax(-1) == targets).sum(-1).double()
                    else:
                        correct = None
                assert isinstance(loss_sum, torch.Tensor)  # batches is never empty
                losses.extend((loss_sum / self.total).tolist())
                if correct is not None:
                    assert isinstance(hits, torch.Tensor)
                    correct.extend((hits / self.total).tolist())
        return losses, correct


def _combine(tensors: Sequence[torch.Tensor], coefs: torch.Tensor) -> torch.Tensor:
    """``(C, *shape)``: row ``c`` is ``Σ_k coefs[c, k]·tensors[k]``."""
    base = tensors[0]
    shape = (len(coefs),) + (1,) * base.dim()
    c = coefs.to(device=base.device, dtype=base.dtype)
    out = c[:, 0].reshape(shape) * base
    for k in range(1, len(tensors)):
        out = out + c[:, k].reshape(shape) * tensors[k]
    return out


def _is_classification(logits: torch.Tensor, targets: torch.Tensor) -> bool:
    return (
        logits.dim() == 2
        and targets.dim() == 1
        and len(logits) == len(targets)
        and not targets.is_floating_point()
        and not targets.is_complex()
    )


def _linspace(field: str, span: tuple[float, float], steps: int) -> torch.Tensor:
    check_int("steps", steps, 2)
    try:
        low, high = (float(v) for v in span)
    except (TypeError, ValueError):
        raise ConfigError(field, span, "must be a pair of numbers (low, high)") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(field, span, "must be two finite numbers with low < high")
    return torch.linspace(low, high, steps, dtype=torch.float64)


def _use_vmap(vectorize: bool | None, device: torch.device) -> bool:
    if vectorize is None:
        return device.type != "cpu"
    if not isinstance(vectorize, bool):
        raise ConfigError("vectorize", vectorize, "must be True, False or None (automatic)")
    return vectorize


def _checked_direction(
    field: str, direction: Sequence[torch.Tensor], params: list[tuple[str, nn.Parameter]]
) -> dict[str, torch.Tensor]:
    """The direction as a name → tensor dict on the parameters' devices and dtypes."""
    ds = list(direction)
    shapes = [tuple(p.shape) for _, p in params]
    got = [tuple(d.shape) if isinstance(d, torch.Tensor) else type(d).__name__ for d in ds]
    if got != shapes:
        raise ConfigError(
            field,
            got,
            f"must be one tensor per trainable parameter, shaped {shapes}",
            hint="Make it with random_direction(model, seed=...).",
        )
    return {
        n: d.detach().to(device=p.device, dtype=p.dtype)
        for (n, p), d in zip(params, ds, strict=True)
    }


def _setup(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Batch],
    fixed: Mapping[str, torch.Tensor],
    vectorize: bool | None,
    chunk_size: int,
    device: torch.device,
) -> _Evaluator:
    check_int("chunk_size", chunk_size, 1)
    data = checked_batches(batches, device)
    return _Evaluator(
        model,
        loss_fn,
        data,
        fixed,
        vectorize=_use_vmap(vectorize, device),
        chunk_size=chunk_size,
    )


def slice_1d(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Batch],
    direction: Sequence[torch.Tensor],
    *,
    steps: int = 21,
    span: tuple[float, float] = (-1.0, 1.0),
    vectorize: bool | None = None,
    chunk_size: int = 16,
) -> Landscape1D:
    """Loss and accuracy at ``θ + α·d`` for ``steps`` evenly spaced ``α`` in ``span``.

    Args:
        model: the trained network (its trainable parameters are ``θ``); run in eval mode,
            never modified.
        loss_fn: ``loss_fn(logits, targets)`` returning the batch's mean loss.
        batches: ``(inputs, targets)`` pairs, read once.
        direction: ``d``, one tensor per trainable parameter (see :func:`random_direction`).
        steps: number of points, ``>= 2``.
        span: ``(low, high)`` of ``α``.
        vectorize: evaluate ``chunk_size`` points per forward with vmap (``True``), one at a
            time (``False``), or vmap on accelerators only (``None``; see the module
            docstring).
        chunk_size: points per vmap call; memory grows with it (activations of
            ``chunk_size`` models at once).

    Returns:
        The landscape; ``alphas`` include 0 when ``span`` and ``steps`` put a point there.

    Raises:
        ConfigError: ``direction`` does not match the model, or an argument is out of range.

    Example:
        >>> import torch.nn.functional as F
        >>> model = torch.nn.Linear(3, 2)
        >>> x, y = torch.ones(4, 3), torch.zeros(4, dtype=torch.long)
        >>> d = random_direction(model, seed=0)
        >>> line = slice_1d(model, F.cross_entropy, [(x, y)], d, steps=5)
        >>> line.alphas
        [-1.0, -0.5, 0.0, 0.5, 1.0]
    """
    alphas = _linspace("span", span, steps)
    params = trainable(model)
    d = _checked_direction("direction", direction, params)
    theta = {n: p.detach() for n, p in params}
    coefs = torch.stack([torch.ones_like(alphas), alphas], dim=1)
    with eval_mode(model):
        evaluate = _setup(model, loss_fn, batches, {}, vectorize, chunk_size, params[0][1].device)
        losses, accuracies = evaluate([theta, d], coefs)
    return Landscape1D(alphas.tolist(), losses, accuracies)


def slice_2d(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Batch],
    d1: Sequence[torch.Tensor],
    d2: Sequence[torch.Tensor],
    *,
    steps: int = 21,
    span: tuple[float, float] = (-1.0, 1.0),
    vectorize: bool | None = None,
    chunk_size: int = 16,
) -> Landscape2D:
    """Loss and accuracy at ``θ + α·d₁ + β·d₂`` on a ``steps × steps`` grid over ``span²``.

    Two independent Gaussian directions in millions of dimensions are nearly orthogonal, so
    no orthogonalisation is done (as in Li et al.).

    Args:
        model: the trained network (its trainable parameters are ``θ``); run in eval mode,
            never modified.
        loss_fn: ``loss_fn(logits, targets)`` returning the batch's mean loss.
        batches: ``(inputs, targets)`` pairs, read once.
        d1: the direction of ``α``, one tensor per trainable parameter.
        d2: the direction of ``β``.
        steps: points per axis, ``>= 2`` (``steps²`` evaluations).
        span: ``(low, high)`` of both ``α`` and ``β``.
        vectorize: see :func:`slice_1d`.
        chunk_size: points per vmap call.

    Returns:
        The landscape, ``losses[i][j]`` at ``(alphas[i], betas[j])``.

    Raises:
        ConfigError: a direction does not match the model, or an argument is out of range.

    Example:
        >>> import torch.nn.functional as F
        >>> model = torch.nn.Linear(3, 2)
        >>> x, y = torch.ones(4, 3), torch.zeros(4, dtype=torch.long)
        >>> d1, d2 = random_direction(model, seed=1), random_direction(model, seed=2)
        >>> plane = slice_2d(model, F.cross_entropy, [(x, y)], d1, d2, steps=3)
        >>> len(plane.losses), len(plane.losses[0])
        (3, 3)
    """
    axis = _linspace("span", span, steps)
    params = trainable(model)
    e1 = _checked_direction("d1", d1, params)
    e2 = _checked_direction("d2", d2, params)
    theta = {n: p.detach() for n, p in params}
    a, b = torch.meshgrid(axis, axis, indexing="ij")  # row-major: point i·steps + j
    coefs = torch.stack(
        [torch.ones(a.numel(), dtype=torch.float64), a.reshape(-1), b.reshape(-1)], 1
    )
    with eval_mode(model):
        evaluate = _setup(model, loss_fn, batches, {}, vectorize, chunk_size, params[0][1].device)
        losses, accuracies = evaluate([theta, e1, e2], coefs)

    def grid(values: list[float]) -> list[list[float]]:
        return [values[i * steps : (i + 1) * steps] for i in range(steps)]

    return Landscape2D(
        axis.tolist(),
        axis.tolist(),
        grid(losses),
        None if accuracies is None else grid(accuracies),
    )


def interpolate(
    model_a_state: Mapping[str, torch.Tensor],
    model_b_state: Mapping[str, torch.Tensor],
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Batch],
    *,
    steps: int = 21,
    span: tuple[float, float] = (-0.5, 1.5),
    vectorize: bool | None = None,
    chunk_size: int = 16,
) -> Landscape1D:
    """Loss and accuracy along ``(1 − t)·θa + t·θb`` between two whole model states.

    The whole state is interpolated: every floating-point entry of the state dicts,
    parameters and buffers alike (BatchNorm running mean and variance), like loss-landscape's
    ``--dir_type states``; mixing weights of one model with the statistics of another would
    measure a network that neither training produced. Integer buffers (BatchNorm's
    ``num_batches_tracked``) are taken from model a. Outside ``[0, 1]`` an interpolated
    running variance can turn negative and the loss NaN; such points are reported as they
    come. ``t = 0`` and ``t = 1`` reproduce a and b exactly (``1·θa + 0·θb`` is ``θa``).

    Args:
        model_a_state: ``state_dict()`` of model a (``t = 0``).
        model_b_state: ``state_dict()`` of model b (``t = 1``), same keys and shapes.
        model: a network of the same architecture, used to run the states; its own tensors
            are never modified; run in eval mode.
        loss_fn: ``loss_fn(logits, targets)`` returning the batch's mean loss.
        batches: ``(inputs, targets)`` pairs, read once.
        steps: number of points, ``>= 2``.
        span: ``(low, high)`` of ``t``.
        vectorize: see :func:`slice_1d`.
        chunk_size: points per vmap call.

    Returns:
        The landscape, its ``alphas`` being the ``t`` values.

    Raises:
        ConfigError: the states' keys or shapes do not match the model's ``state_dict()``, or
            an argument is out of range.

    Example:
        >>> import torch.nn.functional as F
        >>> a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
        >>> x, y = torch.ones(4, 3), torch.zeros(4, dtype=torch.long)
        >>> path = interpolate(a.state_dict(), b.state_dict(), a, F.cross_entropy, [(x, y)],
        ...                    steps=3, span=(0.0, 1.0))
        >>> path.alphas
        [0.0, 0.5, 1.0]
    """
    ts = _linspace("span", span, steps)
    own = model.state_dict()
    for field, given in (("model_a_state", model_a_state), ("model_b_state", model_b_state)):
        missing = sorted(set(own) - set(given))
        unexpected = sorted(set(given) - set(own))
        wrong = sorted(
            n
            for n in set(own) & set(given)
            if not isinstance(given[n], torch.Tensor) or given[n].shape != own[n].shape
        )
        if missing or unexpected or wrong:
            raise ConfigError(
                field,
                f"missing {missing}, unexpected {unexpected}, wrong shape {wrong}",
                "must have the keys and shapes of model.state_dict()",
            )
    device = next(iter(own.values())).device if own else torch.device("cpu")
    varying_a: dict[str, torch.Tensor] = {}
    varying_b: dict[str, torch.Tensor] = {}
    fixed: dict[str, torch.Tensor] = {}
    for name, mine in own.items():
        a = model_a_state[name].detach().to(device=mine.device)
        if mine.is_floating_point() or mine.is_complex():
            varying_a[name] = a.to(mine.dtype)
            varying_b[name] = model_b_state[name].detach().to(mine.device, mine.dtype)
        else:
            fixed[name] = a
    if not varying_a:
        raise ConfigError("model", type(model).__name__, "must have floating-point state")
    coefs = torch.stack([1.0 - ts, ts], dim=1)
    with eval_mode(model):
        evaluate = _setup(model, loss_fn, batches, fixed, vectorize, chunk_size, device)
        losses, accuracies = evaluate([varying_a, varying_b], coefs)
    return Landscape1D(
        ts.tolist(), losses, accuracies, xlabel=_LABEL_T, title="Loss along the interpolation"
    )


# --- plots -----------------------------------------------------------------------------------


def _axes(ax: Axes | None) -> tuple[Figure, Axes]:
    """``ax`` and its top-level figure, or a new figure with one axes (no pyplot, no backend
    needed: a bare ``Figure`` renders with ``savefig``)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - matplotlib is installed with the extras
        raise ImportError(
            "dicelab.analysis.landscape plots need matplotlib. Install it with: "
            "pip install matplotlib"
        ) from err
    if ax is None:
        fig = Figure(figsize=(5.0, 4.0), layout="constrained")
        return fig, fig.add_subplot()
    root = ax.get_figure()
    while root is not None and not isinstance(root, Figure):
        root = root.get_figure()
    if root is None:
        raise ConfigError("ax", ax, "must belong to a figure")
    return root, ax


def plot_1d(landscape: Landscape1D, ax: Axes | None = None) -> Figure:
    """Plot the loss of a 1-D landscape against its coefficient (accuracy on a right axis).

    Args:
        landscape: from :func:`slice_1d` or :func:`interpolate`.
        ax: draw on these axes; ``None`` makes a new figure.

    Returns:
        The figure holding the plot (``fig.savefig(path)`` writes it).

    Example:
        >>> line = Landscape1D([-1.0, 0.0, 1.0], [2.0, 1.0, 2.5], [0.4, 0.6, 0.3])
        >>> plot_1d(line).axes[0].get_xlabel()
        'α (filter-normalised direction 1)'
    """
    fig, ax = _axes(ax)
    ax.plot(landscape.alphas, landscape.losses, color="C0", marker=".", label="loss")
    ax.set_xlabel(landscape.xlabel)
    ax.set_ylabel("loss")
    ax.set_title(landscape.title)
    if landscape.accuracies is not None:
        right = ax.twinx()
        right.plot(landscape.alphas, landscape.accuracies, color="C1", linestyle="--")
        right.set_ylabel("accuracy", color="C1")
    return fig


def plot_2d(landscape: Landscape2D, ax: Axes | None = None, *, levels: int = 20) -> Figure:
    """Contour plot of the loss of a 2-D landscape, the trained model marked at the origin.

    Non-finite losses are left blank.

    Args:
        landscape: from :func:`slice_2d`.
        ax: draw on these axes; ``None`` makes a new figure.
        levels: number of contour levels.

    Returns:
        The figure holding the plot and a colorbar labelled "loss".

    Example:
        >>> plane = Landscape2D([-1.0, 1.0], [-1.0, 1.0], [[2.0, 1.0], [1.5, 3.0]], None)
        >>> plot_2d(plane).axes[0].get_ylabel()
        'β (filter-normalised direction 2)'
    """
    import numpy as np

    check_int("levels", levels, 2)
    fig, ax = _axes(ax)
    losses = np.ma.masked_invalid(np.asarray(landscape.losses, dtype=float).T)
    filled = ax.contourf(landscape.alphas, landscape.betas, losses, levels=levels)
    ax.contour(
        landscape.alphas, landscape.betas, losses, levels=levels, colors="k", linewidths=0.3
    )
    if min(landscape.alphas) <= 0 <= max(landscape.alphas):
        if min(landscape.betas) <= 0 <= max(landscape.betas):
            ax.plot([0.0], [0.0], marker="*", color="w", markeredgecolor="k", markersize=10)
    fig.colorbar(filled, ax=ax, label="loss")
    ax.set_xlabel(landscape.xlabel)
    ax.set_ylabel(landscape.ylabel)
    ax.set_title(landscape.title)
    return fig
