"""Local search workers stop when the search's main process is gone.

(Tagging trials with their worker and failing the trials of dead workers is part of the PSO
sampler's self-contained package, :mod:`dicelab.tune._pso._workers`.)
"""

from __future__ import annotations

import _thread
import logging
import os
import threading
import time

_log = logging.getLogger(__name__)


def exit_with_parent(parent: int, *, poll_s: float = 0.5, grace_s: float = 10.0) -> None:
    """Stop this worker process once its parent ``parent`` is gone (killed with SIGKILL, say),
    instead of searching on as an orphan nobody waits for.

    A daemon thread polls the parent's id. When the process is re-parented it interrupts the
    main thread (a KeyboardInterrupt: Optuna records the running trial as failed, so it is
    evaluated again when the search continues), and ends the process outright if that has
    not happened within ``grace_s`` seconds.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        _log.warning("the search's main process (pid %d) is gone; this worker stops", parent)
        _thread.interrupt_main()
        time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
