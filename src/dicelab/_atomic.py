"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half.

Each write goes to a temporary file in the same folder, is flushed to disk, then renamed over
the target with :func:`os.replace`, which is atomic on POSIX and Windows. A writer killed
before the rename leaves its temporary file, named ``.<target>.<pid>@<host>.<tag>.tmp``;
:func:`remove_stale_temps` removes those whose writer is dead on this host.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import uuid
from pathlib import Path
from typing import Any

import torch

from dicelab.tune._pso._process import alive

# The temporary file of a write: the target's name, the writer's pid and host, a random tag.
# Names written before the host was recorded (``.<target>.<pid>.<tag>.tmp``) still match.
_TEMP = re.compile(
    r"^\.(?P<target>.+)\.(?P<pid>\d+)(?:@(?P<host>[A-Za-z0-9_-]*))?\.[0-9a-f]{8}\.tmp$"
)


def _host() -> str:
    """This machine's name as it appears in temporary file names (letters, digits, _ and -)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64]


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files in ``folder`` left by writers that died before renaming
    them (a kill -9 during a write); the removed paths.

    Only files whose writer ran on this host and whose pid no longer exists are removed: a
    live writer's file, or one from another host sharing the folder, is never touched.
    """
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return removed
    host = _host()
    for name in names:
        match = _TEMP.match(name)
        if match is None or match["pid"] == str(os.getpid()):
            continue
        if match["host"] is not None and match["host"] != host:
            continue
        if alive(int(match["pid"])):
            continue
        path = folder / name
        try:
            path.unlink()
        except FileNotFoundError:  # removed meanwhile by another cleaner
            continue
        removed.append(path)
    return removed


def write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name opened exclusively; unlike mkstemp's 0600 files it follows the umask, so a
    # shared data folder stays readable by its group.
    tmp = path.with_name(f".{path.name}.{os.getpid()}@{_host()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename in (None, str(tmp)):
            err.filename = str(path)  # name the file meant, not the temporary one
        raise


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    write_bytes(path, text.encode())


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as indented, strict JSON (no NaN) atomically."""
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def torch_save(path: Path, obj: Any) -> None:
    """``torch.save`` to ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())
