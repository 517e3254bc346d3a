"""A small name → object registry with "did you mean" errors.

Datasets and models (and later techniques and optimizers) register themselves by decorator at
import time. Registering a taken name raises unless ``replace=True``: silent shadowing would
change what a saved configuration means.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from dicelab.exceptions import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Objects of one kind, addressed by name.

    Args:
        kind: what the registry holds, in words ("dataset", "model"); used in messages.
        field: the configuration field that names an entry ("data.name"); used in messages.
    """

    def __init__(self, kind: str, field: str) -> None:
        self.kind = kind
        self.field = field
        self._entries: dict[str, T] = {}

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name`` and returns it unchanged."""

        def add(obj: T) -> T:
            if name in self._entries and not replace:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered; pass replace=True to "
                    "override it."
                )
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """The entry called ``name``; raises :class:`UnknownNameError` with a suggestion."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.field, name, self._entries, self.kind) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
