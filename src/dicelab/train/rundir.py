"""Run folders: an exclusive claim for the length of a run, and one-line write errors.

Two processes training into one folder would mix their files (one's configuration, the
other's metrics). A run therefore claims its folder first: an exclusive, non-blocking
``flock`` on a lock file in the folder, held until the run returns. The kernel releases the
lock when its process dies, so a ``kill -9`` leaves no stale claim; the lock file holds the
owner's pid, which the refused process names. Every check and write of the folder happens
under the claim.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dicelab.exceptions import RunError

#: The lock file of a claimed run folder (removed when the claim is released).
LOCK = ".dicelab.lock"


class RunDirClaim:
    """An exclusive claim on a run folder, from :func:`claim_run_dir` until :meth:`release`."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        """Whether the claim is still held."""
        return self._fd is not None

    def release(self) -> None:
        """Give the folder up: remove the lock file while still holding it (so no process
        can lock the removed file and think it owns the folder), then unlock."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            (self.folder / LOCK).unlink(missing_ok=True)
        except OSError:
            pass  # a lock file left behind is harmless: the next claim reuses it
        finally:
            os.close(fd)

    def __enter__(self) -> RunDirClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_run_dir(folder: Path) -> RunDirClaim:
    """Create ``folder`` if needed and claim it for this process.

    Raises:
        RunError: another process holds the folder (naming its pid), or the folder cannot be
            created or written (naming the path and the reason).
    """
    with reporting_os_errors(folder):
        if folder.exists() and not folder.is_dir():
            raise RunError(f"{folder} is a file, not a folder; choose a folder with --out")
        _make_folder(folder)
    path = folder / LOCK
    while True:
        with reporting_os_errors(folder):  # the folder: the lock file is an internal name
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _os_error(folder, err) from err
            raise RunError(
                f"{folder} is in use by another dicelab process (pid {_owner(path)}); wait for "
                "it to finish, or choose another folder with --out"
            ) from None
        # The owner removes the lock file before unlocking; if we locked a removed file,
        # the folder is not ours: try again with the file now at that path.
        try:
            held, current = os.fstat(fd), os.stat(path)
            same = (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    claim = RunDirClaim(folder, fd)
    try:
        with reporting_os_errors(folder):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
    except BaseException:
        claim.release()
        raise
    return claim


def _make_folder(folder: Path) -> None:
    """``mkdir -p`` that names the file standing in the way of a folder."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next(
            (p for p in reversed(folder.parents) if p.exists() and not p.is_dir()), folder
        )
        raise RunError(
            f"cannot create run folder {folder}: {blocker} is a file, not a folder; choose "
            "another folder with --out"
        ) from None


def _owner(path: Path) -> str:
    """The pid written in a lock file, or ``"unknown"`` (the owner may be just writing it)."""
    for _ in range(20):
        try:
            text = path.read_text().strip()
        except OSError:
            text = ""
        if text.isdigit():
            return text
        time.sleep(0.01)
    return "unknown"


def _os_error(path: Path, err: OSError) -> RunError:
    """One line for a failed read or write of ``path``: the path, the reason, what to do."""
    reason = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        what = "free space and continue with --resume (what was saved is kept)"
    elif err.errno == errno.EDQUOT:
        what = "free space within your quota and continue with --resume"
    elif err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        what = "choose a writable folder with --out"
    elif err.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST):
        what = "choose another folder with --out"
    else:
        what = "fix the cause and continue with --resume"
    return RunError(f"cannot write {path}: {reason}; {what}")


@contextmanager
def reporting_os_errors(path: Path) -> Iterator[None]:
    """Turn an OSError of the block (a full disk, a read-only folder) into a
    :class:`RunError` naming ``path`` (the file meant, not a temporary name) and what to do."""
    try:
        yield
    except OSError as err:
        raise _os_error(path, err) from err
