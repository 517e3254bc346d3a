"""Hyperparameter declarations: the valid and search ranges live next to the field.

A technique is a dataclass whose fields are built with :func:`hp`. The declaration is the single
source for validation (``valid``), for the search space (``search``, ``log``, ``choices``) and for
``dicelab list techniques``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dicelab.config import finite_rule


@dataclass(frozen=True)
class HParam:
    """What one technique hyperparameter accepts and where a search looks.

    Attributes:
        default: the value that turns the technique off (for its strength field) or the
            authors' fixed value (for the others).
        valid: closed interval ``(low, high)`` of accepted numbers; ``None`` ends are open.
        search: the interval a search samples, inside ``valid``; ``None`` for fixed values.
        log: search on a log scale (ranges that span decades).
        choices: the accepted values of a categorical field.
        doc: one line with the unit or meaning.
    """

    default: Any
    valid: tuple[float | None, float | None] | None = None
    search: tuple[float, float] | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    def problem(self, value: Any) -> str | None:
        """``None`` if ``value`` is allowed, else a phrase saying what is."""
        if self.choices is not None:
            if value in self.choices:
                return None
            return "allowed: " + ", ".join(str(c) for c in self.choices)
        low, high = self.valid or (None, None)
        if _non_finite(value):  # NaN passes every comparison below
            return finite_rule(self.rule())
        if (low is not None and value < low) or (high is not None and value > high):
            return self.rule()
        return None

    def rule(self) -> str:
        """The valid interval in words ("must lie in [0, 1]"); empty for categorical or
        unbounded fields."""
        low, high = self.valid or (None, None)
        if self.choices is not None or (low is None and high is None):
            return ""
        return f"must lie in [{_fmt(low, '-inf')}, {_fmt(high, 'inf')}]"

    def describe(self) -> str:
        """The range in words, for listings: search range if tuned, else the valid one."""
        if self.choices is not None:
            return "{" + ", ".join(str(c) for c in self.choices) + "}"
        if self.search is not None:
            scale = " (log)" if self.log else ""
            return f"[{_fmt(self.search[0])}, {_fmt(self.search[1])}]{scale}"
        if isinstance(self.default, tuple):
            return "list of numbers"
        return f"fixed {self.default}"


def _non_finite(value: Any) -> bool:
    """True for a NaN or infinite real number (a ``float`` or a NumPy floating scalar)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return not math.isfinite(value)


def _fmt(value: float | None, missing: str = "") -> str:
    return missing if value is None else f"{value:g}"


def hp(
    default: Any,
    *,
    valid: tuple[float | None, float | None] | None = None,
    search: tuple[float, float] | None = None,
    log: bool = False,
    choices: Sequence[Any] | None = None,
    doc: str = "",
) -> Any:
    """A dataclass field carrying its :class:`HParam` (see the module docstring)."""
    spec = HParam(default, valid, search, log, tuple(choices) if choices else None, doc)
    if search is not None and valid is not None:
        low, high = valid
        if (low is not None and search[0] < low) or (high is not None and search[1] > high):
            raise ValueError(f"search range {search} must lie inside the valid range {valid}")
    if log and search is not None and search[0] <= 0:
        raise ValueError(f"a log-scale search range must be positive, got {search}")
    return dataclasses.field(default=default, metadata={"hparam": spec})


def hparams(cls: Any) -> dict[str, HParam]:
    """The :class:`HParam` of every field of a dataclass (or instance) declared with
    :func:`hp`, in declaration order."""
    return {
        f.name: f.metadata["hparam"] for f in dataclasses.fields(cls) if "hparam" in f.metadata
    }
