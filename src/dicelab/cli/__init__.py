"""The ``dicelab`` command line."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dicelab`` console script; returns the exit status."""
    raise NotImplementedError
