"""PSOSampler: particle swarm optimisation as an Optuna sampler, with the swarm kept in the
study's storage (see :mod:`.sampler`).

This folder is self-contained: it imports only Optuna, NumPy and the standard library, never
the rest of dicelab, so it can be published as an OptunaHub package as it stands (its
``README.md`` and ``example.py`` are the hub's page and example). Names are imported on first
use, so that the light helpers in it (the process check) do not pull in Optuna.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sampler import NO_RETRY, PSOSampler, SparseInit, SwarmFinished, SwarmWaitTimeout

__all__ = ["NO_RETRY", "PSOSampler", "SparseInit", "SwarmFinished", "SwarmWaitTimeout"]


def __getattr__(name: str) -> Any:
    """The sampler's public names, imported on first use."""
    if name in __all__:
        from . import sampler

        return getattr(sampler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
