"""Pure swarm arithmetic: the encoding of Optuna distributions as real intervals and one
global-best PSO step, synchronous (every particle at once) or one particle at a time. No Optuna
storage access here.

Encoding (one real dimension per parameter):

- ``FloatDistribution``: the interval ``[low, high]``, or ``[ln low, ln high]`` with ``log``;
  decoded values snap to ``step`` when it is set.
- ``IntDistribution``: ``[low − 0.5, high + 0.5]`` (every integer gets an equal share), or
  ``[ln(low − 0.5), ln(high + 0.5)]`` with ``log``; decoded by rounding, clipping and snapping
  to ``step``.
- ``CategoricalDistribution``: ``[0, n)``; decoded as ``floor(x)``. Neighbouring positions are
  neighbouring choices, so order the choices when they have a natural order (the authors
  encode their flip modes and optimizers the same way).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


@dataclass(frozen=True)
class Encoding:
    """Real intervals for a search space, and the maps between positions and parameters."""

    names: tuple[str, ...]
    distributions: tuple[BaseDistribution, ...]
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, space: Mapping[str, BaseDistribution]) -> Encoding:
        names = tuple(sorted(space))
        lows, highs = [], []
        for name in names:
            lo, hi = _interval(name, space[name])
            lows.append(lo)
            highs.append(hi)
        return cls(names, tuple(space[n] for n in names), np.array(lows), np.array(highs))

    @property
    def dims(self) -> int:
        return len(self.names)

    def decode(self, position: np.ndarray) -> dict[str, Any]:
        """The parameter values at a position."""
        return {
            name: _decode(dist, float(x))
            for name, dist, x in zip(self.names, self.distributions, position, strict=True)
        }

    def encode(self, params: Mapping[str, Any]) -> np.ndarray:
        """A position that decodes to ``params`` (the centre of its cell for discrete ones)."""
        pairs = zip(self.names, self.distributions, strict=True)
        return np.array([_encode(dist, params[name]) for name, dist in pairs])


def _interval(name: str, dist: BaseDistribution) -> tuple[float, float]:
    if isinstance(dist, FloatDistribution):
        if dist.log:
            return math.log(dist.low), math.log(dist.high)
        return dist.low, dist.high
    if isinstance(dist, IntDistribution):
        if dist.log:  # low >= 1 for a log-scaled integer
            return math.log(dist.low - 0.5), math.log(dist.high + 0.5)
        return dist.low - 0.5, dist.high + 0.5
    if isinstance(dist, CategoricalDistribution):
        return 0.0, float(len(dist.choices))
    raise TypeError(f"PSOSampler cannot encode parameter {name!r} of type {type(dist).__name__}")


def _decode(dist: BaseDistribution, x: float) -> Any:
    if isinstance(dist, FloatDistribution):
        value = math.exp(x) if dist.log else x
        if dist.step is not None:
            value = dist.low + round((value - dist.low) / dist.step) * dist.step
        return min(max(value, dist.low), dist.high)
    if isinstance(dist, IntDistribution):
        value = round(math.exp(x)) if dist.log else round(x)
        value = dist.low + round((value - dist.low) / dist.step) * dist.step
        return int(min(max(value, dist.low), dist.high))
    assert isinstance(dist, CategoricalDistribution)
    return dist.choices[min(max(math.floor(x), 0), len(dist.choices) - 1)]


def _encode(dist: BaseDistribution, value: Any) -> float:
    if isinstance(dist, FloatDistribution):
        return math.log(value) if dist.log else float(value)
    if isinstance(dist, IntDistribution):
        return math.log(value) if dist.log else float(value)
    assert isinstance(dist, CategoricalDistribution)
    return dist.choices.index(value) + 0.5


@dataclass
class Swarm:
    """One generation of the swarm: positions, velocities, personal and global bests.

    Fitness is "higher is better" here (the sampler negates minimised objectives); a
    particle without a usable result has fitness ``-inf`` and never becomes a best.
    """

    x: np.ndarray  # (N, D) positions of this generation
    v: np.ndarray  # (N, D) the velocities that led here
    pbest_x: np.ndarray  # (N, D)
    pbest_f: np.ndarray  # (N,)
    gbest_x: np.ndarray | None  # (D,)
    gbest_f: float
    improved_at: int  # the last generation whose results raised the global best


@dataclass(frozen=True)
class Coefficients:
    """The PSO constants (defaults: Clerc-Kennedy constriction in inertia form)."""

    inertia: float = 0.7298
    cognitive: float = 1.49618
    social: float = 1.49618
    velocity_clamp: float = 0.2  # fraction of each dimension's range


def initial_swarm(enc: Encoding, n: int, rng: np.random.Generator, coef: Coefficients) -> Swarm:
    """Uniform positions in the box, uniform velocities in ±clamp·range."""
    span = enc.high - enc.low
    x = enc.low + rng.random((n, enc.dims)) * span
    v = (rng.random((n, enc.dims)) * 2 - 1) * coef.velocity_clamp * span
    return Swarm(
        x=x,
        v=v,
        pbest_x=x.copy(),
        pbest_f=np.full(n, -np.inf),
        gbest_x=None,
        gbest_f=-np.inf,
        improved_at=-1,
    )


def update_bests(swarm: Swarm, fitness: np.ndarray, generation: int) -> Swarm:
    """The swarm with the results ``fitness`` of its positions ``x`` taken into the personal
    and global bests (``improved_at`` becomes ``generation`` when the global best rises).
    A particle without a result this time has fitness ``-inf`` and changes nothing."""
    better = fitness > swarm.pbest_f
    pbest_x = np.where(better[:, None], swarm.x, swarm.pbest_x)
    pbest_f = np.where(better, fitness, swarm.pbest_f)
    gbest_x, gbest_f, improved_at = swarm.gbest_x, swarm.gbest_f, swarm.improved_at
    best = int(np.argmax(pbest_f))
    if pbest_f[best] > gbest_f:
        gbest_x, gbest_f, improved_at = pbest_x[best].copy(), float(pbest_f[best]), generation
    return Swarm(swarm.x, swarm.v, pbest_x, pbest_f, gbest_x, gbest_f, improved_at)


def move(
    swarm: Swarm,
    rows: slice | int,
    enc: Encoding,
    rng: np.random.Generator,
    coef: Coefficients,
) -> None:
    """Move the particles ``rows`` of ``swarm`` in place, towards their personal bests and the
    swarm's current global best.

    v ← w·v + c1·r1·(pbest − x) + c2·r2·(gbest − x), r1, r2 ~ U(0, 1) per particle and
    dimension, |v| clamped to clamp·range, x ← clip(x + v) to the bounds.
    """
    x, v = swarm.x[rows], swarm.v[rows]
    r1, r2 = rng.random(x.shape), rng.random(x.shape)
    social = 0.0 if swarm.gbest_x is None else coef.social * r2 * (swarm.gbest_x - x)
    v = coef.inertia * v + coef.cognitive * r1 * (swarm.pbest_x[rows] - x) + social
    limit = coef.velocity_clamp * (enc.high - enc.low)
    v = np.clip(v, -limit, limit)
    swarm.v[rows] = v
    swarm.x[rows] = np.clip(x + v, enc.low, enc.high)


def advance(
    swarm: Swarm,
    fitness: np.ndarray,
    generation: int,
    enc: Encoding,
    rng: np.random.Generator,
    coef: Coefficients,
) -> Swarm:
    """One synchronous step: take the results of the swarm's generation into the bests,
    then move every particle (:func:`move`). ``swarm`` itself is not changed."""
    moved = update_bests(swarm, fitness, generation)
    moved.x, moved.v = swarm.x.copy(), swarm.v.copy()
    move(moved, slice(None), enc, rng, coef)
    return moved
