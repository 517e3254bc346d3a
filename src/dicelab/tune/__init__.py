"""Search where and how much randomness helps: a storage-backed PSO sampler for Optuna and the
dicelab search, evaluation and storage helpers built on it. Needs optuna.

The sampler is imported on first use, so that the light helpers below this package (the
process check used by dicelab's atomic file writes) do not pull in Optuna.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dicelab.tune._pso import (
        NO_RETRY,
        PSOSampler,
        SparseInit,
        SwarmFinished,
        SwarmWaitTimeout,
    )

__all__ = ["NO_RETRY", "PSOSampler", "SparseInit", "SwarmFinished", "SwarmWaitTimeout"]


def __getattr__(name: str) -> Any:
    """The sampler's public names, imported on first use."""
    if name in __all__:
        from dicelab.tune import _pso

        return getattr(_pso, name)
    raise AttributeError(f"module 'dicelab.tune' has no attribute {name!r}")
