"""Exceptions that carry a message meant for the user.

Every error a user can cause (a typo in a name, a value out of range, a missing data file)
is a :class:`DicelabError`. The CLI prints its message, without a traceback, and exits with
its ``exit_code``: 2 for usage, configuration and data errors, 1 for a run that failed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DicelabError(Exception):
    """Base class of the errors dicelab reports to users."""

    exit_code: int = 1


class ConfigError(DicelabError, ValueError):
    """A configuration value is malformed or out of range.

    Args:
        field: dotted path of the offending field, e.g. ``"optimizer.lr"``.
        value: the value received.
        allowed: what would have been accepted, in words.
    """

    exit_code = 2

    def __init__(self, field: str, value: object, allowed: str, hint: str = "") -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        message = f"{field}: got {value!r}; {allowed}."
        if hint:
            message += f" {hint}"
        super().__init__(message)


class UnknownNameError(ConfigError, LookupError):
    """A name (dataset, model, optimizer, config key) is not one dicelab knows."""

    def __init__(self, field: str, value: str, choices: Iterable[str], kind: str = "") -> None:
        choices = sorted(choices)
        kind = kind or field.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
        hint = f"Did you mean {close[0]!r}?" if close else ""
        allowed = (
            f"unknown {kind}; allowed: {', '.join(choices)}"
            if choices
            else (f"unknown {kind}; none is available")
        )
        super().__init__(field, value, allowed, hint)


class DataError(DicelabError):
    """Data files are missing, corrupted or cannot be downloaded."""

    exit_code = 2


class RunError(DicelabError):
    """A run could not start or continue (for example a resume that does not match)."""

    exit_code = 2


class StorageError(DicelabError):
    """A search storage (a database server or a journal file) cannot be opened or used.

    Raised for a database that is unreachable, refuses the connection (wrong user, password or
    database name), lacks its Python driver, or holds tables of an incompatible Optuna version;
    the message never contains the password of the database URL.
    """

    exit_code = 2


def failure_words(exc: BaseException) -> str:
    """What the user's code (a ``module:function`` dataset or model) did instead of returning,
    in words for an error message: ``raised ValueError: ...`` or ``exited (sys.exit(3))
    instead of returning``."""
    if isinstance(exc, SystemExit):
        return f"exited (sys.exit({exc.code!r})) instead of returning"
    return f"raised {type(exc).__name__}: {exc}"
