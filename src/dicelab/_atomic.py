"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half.

Each write goes to a temporary file in the same folder, is flushed to disk, then renamed over
the target with :func:`os.replace`, which is atomic on POSIX and Windows.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch


def write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name opened exclusively; unlike mkstemp's 0600 files it follows the umask, so a
    # shared data folder stays readable by its group.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
