"""Mount a small tmpfs for a test (a real full or read-only disk); root only, else skipped."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted_tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``where`` (created) with mount ``options`` such as ``size=16k`` or
    ``size=64k,ro``, unmounted afterwards; the test is skipped where mounting is refused."""
    where.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def resize(where: Path, size: str) -> None:
    """Grow (or shrink) the tmpfs at ``where``, as if space had been freed."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)
