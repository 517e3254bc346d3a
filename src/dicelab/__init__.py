"""dicelab: randomness engineering for deep-network training.

The commands are functions here, imported on first use so that ``import dicelab`` stays
light: :func:`train`, :func:`search`, :func:`evaluate`, :func:`ablate`, :func:`analyze` and
:func:`report` (see :mod:`dicelab.api`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dicelab.version import __version__

if TYPE_CHECKING:
    from dicelab.api import ablate, analyze, evaluate, report, search, train

__all__ = ["__version__", "ablate", "analyze", "evaluate", "report", "search", "train"]

_API = {"ablate", "analyze", "evaluate", "report", "search", "train"}


def __getattr__(name: str) -> Any:
    """The command functions, imported on first use (``dicelab.train`` is also the training
    package, made callable, once that is imported)."""
    if name in _API:
        from dicelab import api

        return getattr(api, name)
    raise AttributeError(f"module 'dicelab' has no attribute {name!r}")
