"""Open the Optuna storage a search writes to, from the one ``--storage`` value a user gives.

Two kinds of storage are supported, told apart by the value alone:

* a database URL (``sqlite:///search.db``, ``postgresql://user:pw@host/db``,
  ``mysql://user:pw@host/db``) gives an :class:`optuna.storages.RDBStorage` with a heartbeat,
  so that the trials of a worker that crashed are failed and retried (twice at most) by the
  workers still running;
* anything else is the path of a journal file, giving an :class:`optuna.storages.JournalStorage`
  (no server needed, works on NFS; Optuna has no heartbeat for it).

Every way the value can be wrong ends in a :class:`~dicelab.exceptions.ConfigError` (a malformed
value) or a :class:`~dicelab.exceptions.StorageError` (a database that cannot be reached or
refuses us) whose one-line message names ``--storage``; the password of a URL is masked in
every message, since messages end up in logs and terminals.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from sqlalchemy.engine import URL, make_url

from dicelab.exceptions import ConfigError, StorageError
from dicelab.tune._journal import SafeJournalBackend, repair_journal

__all__ = ["CONNECT_TIMEOUT_S", "MAX_RETRY", "RETRY_ENV", "describe_storage", "open_storage"]

_log = logging.getLogger(__name__)

#: The option the storage value comes from, named in every error message.
FIELD = "--storage"

#: Seconds to wait for a database server to answer before giving up (a server that is down or
#: behind a firewall must fail a worker's start quickly, not hang it).
CONNECT_TIMEOUT_S = 5

#: How many times a trial whose worker stopped sending heartbeats is retried.
MAX_RETRY = 2

#: Database backends accepted in a URL (the part of the scheme before any ``+driver``).
SCHEMES = ("sqlite", "postgresql", "mysql")

_ALLOWED = (
    "expected a database URL (sqlite:///FILE, postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
    "or mysql://USER:PASSWORD@HOST:PORT/DATABASE) or the path of a journal file"
)

#: ``scheme://`` at the start of a URL.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")

#: A value meant as a URL but missing its ``//`` (``postgres:/db``, ``sqlite:x.db``): a scheme of
#: two letters or more (one letter is a Windows drive) followed by ``:/``, or a database name
#: followed by ``:``.
_URL_INTENT = re.compile(
    r"^(?:[A-Za-z][A-Za-z0-9+.\-]+:/|(?:sqlite|postgres|postgresql|mysql|mariadb)[A-Za-z0-9+]*:)",
    re.IGNORECASE,
)

#: ``scheme://user:PASSWORD@``; the password runs to the last ``@`` so that an unescaped ``@``
#: in it is masked too (better to mask too much than to print part of a password).
_USERINFO_PASSWORD = re.compile(r"^([^:/?#]+://[^:/@?#]*:)(.*)@")

#: ``password=...`` in the query string (libpq and MySQL drivers accept it there).
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)

#: The keyword of the connect timeout for each driver that has one, by ``backend+driver``.
_TIMEOUT_ARG = {
    "postgresql+psycopg2": "connect_timeout",
    "postgresql+psycopg": "connect_timeout",
    "postgresql+pg8000": "timeout",
    "mysql+mysqldb": "connect_timeout",
    "mysql+pymysql": "connect_timeout",
    "mysql+mysqlconnector": "connection_timeout",
}

#: For a URL without ``+driver``: SQLAlchemy's default driver module, and the installed
#: alternative used when that one is missing (``psycopg2-binary`` is the driver dicelab's dev
#: tools install, while SQLAlchemy 2.1 defaults to psycopg 3).
_DRIVER_FALLBACK = {
    "postgresql": ("psycopg", "psycopg2", "postgresql+psycopg2"),
    "mysql": ("MySQLdb", "pymysql", "mysql+pymysql"),
}

#: What to install for a missing driver, by backend.
_DRIVER_HINT = {
    "postgresql": "pip install psycopg2-binary (then postgresql+psycopg2:// or postgresql://)",
    "mysql": "pip install pymysql (then mysql+pymysql:// or mysql://)",
    "sqlite": "use a Python built with the sqlite3 module",
}

#: What to check when a database cannot be opened, by backend.
_CHECK = {
    "sqlite": "Check that the folder of the database file exists and is writable.",
    "server": (
        "Check that the server is running and reachable from this machine, and that the "
        "user, password and database name are right."
    ),
}


def describe_storage(spec: str | Path) -> str:
    """``spec`` as it may be shown to a user: a URL with its password replaced by ``***``.

    >>> describe_storage("postgresql://ann:s3cret@db.lab:5432/search")
    'postgresql://ann:***@db.lab:5432/search'
    >>> describe_storage("runs/search.log")
    'runs/search.log'
    """
    text = str(spec)
    text = _USERINFO_PASSWORD.sub(r"\1***@", text, count=1)
    return _QUERY_PASSWORD.sub(r"\1***", text)


def open_storage(
    spec: str | Path, *, heartbeat_interval: int = 60, grace_period: int | None = None
) -> BaseStorage:
    """The Optuna storage ``spec`` names: a database for a URL, a journal file for a path.

    A string containing ``://`` is a database URL; its scheme must be ``sqlite``, ``postgresql``
    or ``mysql``, with or without a ``+driver``. The database gets an
    :class:`~optuna.storages.RDBStorage` whose workers send a heartbeat every
    ``heartbeat_interval`` seconds while ``study.optimize`` runs; a trial without a heartbeat
    for ``grace_period`` seconds (Optuna's default: twice the interval) is failed and retried
    up to :data:`MAX_RETRY` times. A plain ``postgresql://`` or ``mysql://`` uses an installed
    driver when SQLAlchemy's default one is missing.

    Anything else (and every :class:`~pathlib.Path`) is the path of a journal file, created
    with its folder when missing. Journal storage has no heartbeat, so the two heartbeat
    arguments do not apply to it.

    Raises:
        ConfigError: a malformed URL, a scheme or driver other than those above, or a path that
            is a folder.
        StorageError: a database that cannot be reached, refuses the connection or holds
            tables of another Optuna version, a missing driver, or a journal file that cannot
            be created or read.
        ValueError: ``heartbeat_interval`` or ``grace_period`` is not positive (a programming
            error, not a user's).
    """
    if heartbeat_interval <= 0:
        raise ValueError(f"heartbeat_interval must be positive, got {heartbeat_interval}")
    if grace_period is not None and grace_period <= 0:
        raise ValueError(f"grace_period must be positive, got {grace_period}")
    if isinstance(spec, Path):
        return _open_journal(spec)
    if not spec.strip():
        raise ConfigError(FIELD, spec, _ALLOWED)
    if "://" in spec or _URL_INTENT.match(spec):
        return _open_database(spec, heartbeat_interval, grace_period)
    return _open_journal(Path(spec))


def _open_journal(path: Path) -> JournalStorage:
    """A journal storage in the file ``path``, created with its folder when missing."""
    path = path.expanduser()
    shown = str(path)
    if path.is_dir():
        raise ConfigError(
            FIELD,
            shown,
            "this is a folder; expected the path of a journal file or a database URL",
            hint=f"Name a file, for example {str(path / 'search.log')!r}.",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"{FIELD}: cannot create the folder {str(path.parent)!r} for the journal file "
            f"{shown!r}: {exc.strerror or exc}."
        ) from None
    try:
        try:
            return JournalStorage(SafeJournalBackend(str(path)))
        except (ValueError, KeyError, TypeError):
            # A torn record with the next one glued onto it (written before dicelab mended
            # torn tails) is repaired once; anything else is not a journal we can read.
            if not repair_journal(path):
                raise
            return JournalStorage(SafeJournalBackend(str(path)))
    except OSError as exc:
        raise StorageError(
            f"{FIELD}: cannot open the journal file {shown!r}: {exc.strerror or exc}."
        ) from None
    except (ValueError, KeyError, TypeError):
        raise StorageError(
            f"{FIELD}: {shown!r} is not an Optuna journal file (its content cannot be read "
            "as one); name a new file or a journal written by dicelab or Optuna."
        ) from None


#: Environment variable: seconds a worker keeps retrying a database that stopped answering
#: before it gives up with one line (default :data:`RETRY_S`).
RETRY_ENV = "DICELAB_STORAGE_RETRY_S"

#: Default of :data:`RETRY_ENV`: long enough for a database server to restart.
RETRY_S = 120.0

#: Longest pause between two tries, in seconds (the pauses double from 0.5 s up to it).
_MAX_PAUSE_S = 8.0


def _retry_budget() -> float:
    """Seconds to keep retrying a lost database: :data:`RETRY_ENV` if set, else the default."""
    raw = os.environ.get(RETRY_ENV, "")
    try:
        value = float(raw) if raw else RETRY_S
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(RETRY_ENV, raw, "must be a number of seconds >= 0")
    return value


def _connection_lost(exc: BaseException) -> BaseException | None:
    """The error in ``exc``'s chain saying the database cannot be reached right now (as
    opposed to a query it refused), worth retrying; None if there is none."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.connection_invalidated:
            return cause
        if isinstance(
            cause,
            (
                sqlalchemy.exc.OperationalError,
                sqlalchemy.exc.InterfaceError,
                sqlalchemy.exc.DisconnectionError,
            ),
        ):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


#: The RDBStorage methods a worker reaches, each of which opens a database session of its own
#: and so can be tried again as a whole: Optuna's storage and heartbeat interfaces, and the
#: private methods its storage cache and stale-trial check call directly (Optuna 5.0).
_RETRIED = tuple(
    name
    for base in (BaseStorage, BaseHeartbeat)
    for name, member in vars(base).items()
    if callable(member) and not name.startswith("_")
) + (
    "_create_new_trial",
    "_set_trial_param",
    "_get_best_trial_id",
    "_get_trials",
    "_get_stale_trial_ids",
)


def _retry_lost_connections(storage: RDBStorage, shown: str) -> None:
    """Make every storage call of ``storage`` survive a database outage: a call that finds the
    connection lost is tried again, with pauses doubling up to 8 s, for up to
    :func:`_retry_budget` seconds, then fails with one :class:`StorageError` line. One warning
    line says when the database was lost, and one when it is back.

    A heartbeat that cannot be recorded within that time is given up with a warning instead
    (it runs in a thread of its own, where an error would only print a traceback); the
    trial's own calls meet the outage and report it.

    A write whose answer was lost after the database committed it is sent again; Optuna's
    writes either repeat harmlessly or are refused as already done, which then ends the
    worker with one line (rare: the connection must drop between commit and reply).
    """
    budget = _retry_budget()
    outage: dict[str, float] = {}  # "since": when the database was lost (shared by threads)

    def retrying(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def run(*args: Any, **kwargs: Any) -> Any:
            pause = 0.5
            while True:
                try:
                    result = call(*args, **kwargs)
                except Exception as exc:
                    lost = _connection_lost(exc)
                    if lost is None:
                        raise
                    now = time.monotonic()
                    since = outage.setdefault("since", now)
                    if since == now:
                        _log.warning(
                            "%s: lost the database %r (%s); retrying for up to %g s",
                            FIELD,
                            shown,
                            _reason(lost, storage_url, shown),
                            budget,
                        )
                    if now - since >= budget:
                        if name == "record_heartbeat":
                            _log.warning("%s: a trial's heartbeat could not be recorded", FIELD)
                            return None
                        raise StorageError(
                            f"{FIELD}: lost the database {shown!r} for {budget:g} s: "
                            f"{_reason(lost, storage_url, shown)} Every finished trial is kept "
                            "there; run the same command again once the database is back."
                        ) from None
                    time.sleep(pause)
                    pause = min(2 * pause, _MAX_PAUSE_S)
                    continue
                since = outage.pop("since", -1.0)  # one atomic step: threads share it
                if since >= 0:
                    _log.warning(
                        "%s: the database is back after %.0f s", FIELD, time.monotonic() - since
                    )
                return result

        return run

    storage_url = make_url(storage.url)
    for name in _RETRIED:
        setattr(storage, name, retrying(name, getattr(storage, name)))


_CREATE_ATTEMPTS = 5


def _open_database(spec: str, heartbeat_interval: int, grace_period: int | None) -> RDBStorage:
    """An RDB storage with heartbeat and retry for the database URL ``spec``."""
    url = _parse_url(spec)
    shown = describe_storage(spec)
    backend = url.get_backend_name()
    # A pooled connection that the server dropped (it restarted) is replaced before use.
    engine_kwargs: dict[str, object] = {"pool_pre_ping": True}
    timeout_arg = _TIMEOUT_ARG.get(f"{backend}+{url.get_driver_name()}")
    if timeout_arg is not None and timeout_arg not in url.query:
        engine_kwargs["connect_args"] = {timeout_arg: CONNECT_TIMEOUT_S}
    with warnings.catch_warnings():
        # heartbeat_interval is marked experimental in Optuna 5; using it is our choice.
        warnings.simplefilter("ignore", ExperimentalWarning)
        try:
            for attempt in range(_CREATE_ATTEMPTS):
                try:
                    storage = RDBStorage(
                        url.render_as_string(hide_password=False),
                        engine_kwargs=engine_kwargs,
                        heartbeat_interval=heartbeat_interval,
                        grace_period=grace_period,
                        heartbeat_stale_trial_callback=(
                            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
                        ),
                    )
                    _retry_lost_connections(storage, shown)
                    return storage
                except sqlalchemy.exc.IntegrityError:
                    # Workers starting together on an empty database race to create Optuna's
                    # tables; the loser sees "already exists" and only has to try again.
                    if attempt == _CREATE_ATTEMPTS - 1:
                        raise
                    time.sleep(0.2 * (attempt + 1))
            raise AssertionError("unreachable")
        except ImportError as exc:  # Optuna wraps the driver's ModuleNotFoundError
            missing = getattr(exc.__cause__, "name", None) or "its driver module"
            raise StorageError(
                f"{FIELD}: cannot open the database {shown!r}: the Python driver "
                f"{missing!r} is not installed; {_DRIVER_HINT.get(backend, 'install it')}."
            ) from None
        except sqlalchemy.exc.ArgumentError as exc:  # a query argument the driver rejects
            raise ConfigError(FIELD, shown, _ALLOWED, hint=_reason(exc, url, spec)) from None
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
            # Optuna wraps a failure inside its own session (the server going down while the
            # tables are checked, say) in StorageInternalError; the driver's words are in it.
            cause = exc.__cause__ if isinstance(exc, optuna.exceptions.OptunaError) else exc
            raise StorageError(
                f"{FIELD}: cannot open the database {shown!r}: "
                f"{_reason(cause or exc, url, spec)} " + _CHECK.get(backend, _CHECK["server"])
            ) from None
        except RuntimeError as exc:  # Optuna: tables written by an incompatible version
            raise StorageError(
                f"{FIELD}: cannot use the database {shown!r}: {_reason(exc, url, spec)}"
            ) from None


def _parse_url(spec: str) -> URL:
    """``spec`` parsed as a database URL of an accepted scheme, with an installed driver
    substituted for a missing default one; a ConfigError when it is not such a URL."""
    shown = describe_storage(spec)
    backend = re.split(r"[+:]", spec, maxsplit=1)[0].lower()
    hint = {
        "postgres": "PostgreSQL URLs start with 'postgresql://'.",
        "mariadb": "MariaDB URLs start with 'mysql://'.",
    }.get(backend, "")
    if _SCHEME.match(spec) is None:
        hint = f"It looks like a URL without '://'. {hint}".rstrip()
        raise ConfigError(FIELD, shown, _ALLOWED, hint)
    userinfo = re.split(r"[/?#]", spec.split("://", 1)[1], maxsplit=1)[0].rpartition("@")[0]
    if "@" in userinfo:
        raise ConfigError(
            FIELD,
            shown,
            _ALLOWED,
            "The user name or password contains '@', which ends the user part of a URL: "
            "percent-encode it as %40 (and '/' as %2F, ':' as %3A, '#' as %23, '?' as %3F).",
        )
    if backend not in SCHEMES:
        raise ConfigError(
            FIELD,
            shown,
            f"unknown database scheme {backend!r}; allowed: {', '.join(SCHEMES)} "
            "(a URL), or the path of a journal file",
            hint,
        )
    try:
        url = make_url(spec)
        url.get_dialect()  # loads the dialect: an unknown +driver fails here, not later
    except sqlalchemy.exc.NoSuchModuleError:
        raise ConfigError(
            FIELD,
            shown,
            f"unknown driver {spec.split('://', 1)[0]!r}; use {backend}:// or "
            f"{backend}+DRIVER:// with a driver SQLAlchemy supports",
        ) from None
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
        hint = f"It is not a valid URL: {_scrub(str(exc), spec)}."
        raise ConfigError(FIELD, shown, _ALLOWED, hint=hint) from None
    if url.drivername in _DRIVER_FALLBACK:
        default, alternative, drivername = _DRIVER_FALLBACK[url.drivername]
        if not _importable(default) and _importable(alternative):
            url = url.set(drivername=drivername)
    return url


def _importable(module: str) -> bool:
    """Whether the top-level ``module`` is installed (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _reason(exc: BaseException, url: URL, spec: str) -> str:
    """The driver's own words for ``exc`` as one sentence on one line, without SQLAlchemy's
    boilerplate and without the password of ``url``."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    text = text.split("(Background on this error at:", 1)[0]
    text = " ".join(text.split())
    if not text.endswith((".", "?", "!")):
        text += "."
    return _scrub(text, spec, url.password)


def _scrub(text: str, spec: str, password: object = None) -> str:
    """``text`` with every password ``spec`` contains (and ``password``) replaced by ``***``."""
    secrets = {str(password)} if password else set()
    match = _USERINFO_PASSWORD.match(spec)
    if match and match.group(2):
        secrets.add(match.group(2))
    for query in re.finditer(r"[?&]password=([^&]*)", spec, re.IGNORECASE):
        if query.group(1):
            secrets.add(query.group(1))
    # A password holding a URL delimiter is split by the parser, and an error may quote one
    # piece of it (as a host name, say): mask the pieces too.
    for secret in list(secrets):
        secrets.update(piece for piece in re.split(r"[@:/?#&=]", secret) if len(piece) >= 3)
    text = text.replace(spec, describe_storage(spec))
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
