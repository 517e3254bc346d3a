"""A journal file that a crash or a full disk cannot destroy.

Optuna's :class:`~optuna.storages.journal.JournalFileBackend` appends one JSON line per
operation, under a file lock. A write cut short (the writer killed mid-write, or a full disk)
leaves a *torn* last line without its newline. Optuna's reader skips a torn last line, but the
next append is glued onto it: that line no longer parses, and from then on every read of the
study fails. :class:`SafeJournalBackend` keeps the file readable:

* before every append, under the lock, a last line that is torn or does not parse (no writer
  holds the lock, so it is not a write in progress) is moved aside to ``<journal>.torn`` with a
  warning, never glued onto;
* a write that fails (``ENOSPC``, ``EFBIG``, an I/O error) is rolled back: the file is cut back
  to its size before the write, so the journal stays as it was, and the error is a
  :class:`~dicelab.exceptions.StorageError` naming the file and the reason.

:func:`repair_journal` mends a journal damaged by an older writer (a torn record with the next
one glued onto it): the original is kept as ``<journal>.damaged-<time>``, each glued line keeps
its complete last record (the torn prefix never took effect: its writer failed, and the
writers after it never read it), and a line that cannot be recovered is refused, leaving the
file untouched.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file

from dicelab import _atomic
from dicelab.exceptions import StorageError

_log = logging.getLogger(__name__)

#: Bytes read at a time when looking backwards for the start of the last line.
_CHUNK = 4096

#: Errors that mean "no room left": the disk, the user's quota, or the largest file allowed.
FULL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

#: How every record of an Optuna journal starts (``json.dumps`` with compact separators).
_RECORD_START = b'{"op_code":'


def _is_record(line: bytes) -> bool:
    """Whether ``line`` (without its newline) is one complete journal record."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False
    return isinstance(record, dict) and "op_code" in record


def _last_line_start(handle: Any, end: int) -> int:
    """The offset where the line ending at ``end`` starts (just after the previous newline)."""
    position = end
    while position > 0:
        start = max(0, position - _CHUNK)
        handle.seek(start)
        found = handle.read(position - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        position = start
    return 0


def _good_end(handle: Any, size: int) -> int:
    """The size a journal of ``size`` bytes, open in ``handle``, must be cut to so that it
    ends with a complete, readable record."""
    if size == 0:
        return 0
    handle.seek(size - 1)
    if handle.read(1) != b"\n":
        return _last_line_start(handle, size)
    start = _last_line_start(handle, size - 1)
    handle.seek(start)
    return size if _is_record(handle.read(size - 1 - start)) else start


def _set_aside(path: Path, data: bytes, why: str) -> None:
    """Append ``data`` (a damaged fragment) to ``<path>.torn`` and say so in one line."""
    aside = path.with_name(path.name + ".torn")
    with open(aside, "ab") as handle:
        handle.write(data.rstrip(b"\n") + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    _log.warning(
        "%s: %s (%d bytes, from a crash or a full disk); moved aside to %s",
        path,
        why,
        len(data),
        aside,
    )


class SafeJournalBackend(JournalFileBackend):
    """A journal file backend whose appends never glue onto a torn line and never leave one
    (see the module docstring)."""

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        self._path = Path(file_path)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
        # Unbuffered: nothing is left in a buffer to be written after a rollback.
        with get_lock_file(self._lock), open(self._path, "a+b", buffering=0) as handle:
            try:
                size = self._trim_damaged_tail(handle)
            except OSError as exc:
                raise self._failure("cannot set its damaged last record aside", exc) from None
            try:
                rest = memoryview(data)
                while rest:  # append mode: at the end, wherever the handle was
                    rest = rest[handle.write(rest) :]
                os.fsync(handle.fileno())
            except OSError as exc:
                try:
                    handle.truncate(size)
                except OSError:  # the next append finds the torn line and sets it aside
                    pass
                raise self._failure("cannot write to it", exc) from None

    def _trim_damaged_tail(self, handle: Any) -> int:
        """Move a torn or unreadable last line aside (under the lock); the file's size."""
        size = handle.seek(0, os.SEEK_END)
        end = _good_end(handle, size)
        if end < size:
            handle.seek(end)
            fragment = handle.read()
            torn = not fragment.endswith(b"\n")
            why = "the last record was torn" if torn else "the last record was unreadable"
            _set_aside(self._path, fragment, why)
            handle.truncate(end)
        return end

    def _failure(self, what: str, exc: OSError) -> StorageError:
        hint = (
            " Free space, then run the same command again to continue."
            if exc.errno in FULL_DISK
            else ""
        )
        return StorageError(
            f"--storage: the journal file {str(self._path)!r}: {what}: "
            f"{exc.strerror or exc}; the journal is unchanged.{hint}"
        )


def repair_journal(path: Path) -> int:
    """Mend the glued lines of a damaged journal (see the module docstring); the number of
    lines mended (0 for a file without any journal record: not a journal, left alone).
    Raises StorageError, leaving the file untouched, if a line cannot be recovered or the file
    cannot be rewritten."""
    backend = SafeJournalBackend(str(path))
    with get_lock_file(backend._lock):
        original = path.read_bytes()
        lines = original.split(b"\n")
        tail = lines.pop()  # after the last newline: empty, or a torn record left for later
        kept: list[bytes] = []
        dropped: list[bytes] = []
        if not any(_is_record(line) for line in lines):
            return 0  # not a journal at all: nothing to mend
        for number, line in enumerate(lines, 1):
            if _is_record(line):
                kept.append(line)
                continue
            start = line.rfind(_RECORD_START)
            if start > 0 and _is_record(line[start:]):
                kept.append(line[start:])
                dropped.append(line[:start])
                continue
            raise StorageError(
                f"--storage: line {number} of the journal file {str(path)!r} is damaged and "
                "cannot be recovered; the file is left as it is. Restore it from a backup, or "
                "start a new search with another --out or --storage."
            )
        if not dropped:
            return 0
        backup = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.link(path, backup)
            _atomic.write_bytes(path, b"".join(line + b"\n" for line in kept) + tail)
        except OSError as exc:
            raise StorageError(
                f"--storage: cannot repair the journal file {str(path)!r}: "
                f"{exc.strerror or exc}; the file is left as it is."
            ) from None
        for fragment in dropped:
            _set_aside(path, fragment, "a torn record had the next one glued onto it")
        _log.warning(
            "%s: %d damaged lines mended; the original is kept as %s", path, len(dropped), backup
        )
        return len(dropped)
