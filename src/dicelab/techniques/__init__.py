"""The randomness technique catalog.

Each technique is one module in the folder of its category (``data/``, ``model/``,
``optimization/``, ``learning/``) and registers itself on import; importing this package imports
them all. See :mod:`dicelab.techniques._base` for the hooks and :class:`Injector` for using
techniques in any training loop.
"""

from __future__ import annotations

import importlib
import pkgutil

from dicelab.techniques._base import (
    TECHNIQUES,
    BaseTechnique,
    create_technique,
    list_techniques,
    mid_range,
    register_technique,
)
from dicelab.techniques._injector import Injector

_CATEGORY_PACKAGES = ("data", "model", "optimization", "learning")


def _import_catalog() -> None:
    """Import every technique module (registration happens at import)."""
    for package in _CATEGORY_PACKAGES:
        module = importlib.import_module(f"{__name__}.{package}")
        for info in pkgutil.iter_modules(module.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{module.__name__}.{info.name}")


_import_catalog()

__all__ = [
    "TECHNIQUES",
    "BaseTechnique",
    "Injector",
    "create_technique",
    "list_techniques",
    "mid_range",
    "register_technique",
]
