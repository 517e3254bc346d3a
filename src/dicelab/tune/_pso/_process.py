"""Whether a process of this host still runs: for cleaning up after writers and workers that
were killed (their temporary files, their RUNNING trials)."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie.

    A process of another user counts as alive. A killed worker whose parent died too stays a
    zombie until someone reaps it, which a container's init may never do: a zombie is dead.
    A pid that cannot be tested (0 or negative) counts as alive, so nothing of it is removed.
    """
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS) or gone meanwhile
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
