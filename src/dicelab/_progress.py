"""Progress lines for the long commands: one line per finished unit of work (a trial, a
training run) with what it was, how long the command has run and how long it still needs."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    """``seconds`` as a clock reading: ``0:07``, ``12:30``, ``1:02:03``.

    >>> [duration(s) for s in (7.4, 750, 3723)]
    ['0:07', '12:30', '1:02:03']
    """
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def stderr(line: str) -> None:
    """Print one progress line on standard error, at once."""
    print(line, file=sys.stderr, flush=True)


class Progress:
    """Counts finished units of work out of ``total`` and says each in one line, with the time
    since the start and an estimate of the time left (from the pace so far).

    Args:
        total: units expected in all; None when unknown (no estimate is shown then).
        say: where lines go (``None`` is silent).
        done: units already finished before this process started (a resumed command): they
            count towards the total but not towards the pace.
    """

    def __init__(
        self, total: int | None, say: Callable[[str], None] | None, *, done: int = 0
    ) -> None:
        self.total = total
        self.say = say
        self.done = done
        self._first = done
        self._start = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since this progress started."""
        return time.monotonic() - self._start

    def step(self, text: str, *, done: int | None = None) -> None:
        """One more unit finished (or ``done`` in all, when others count too): say ``text``
        with the count, the elapsed time and the estimate."""
        self.done = self.done + 1 if done is None else done
        if self.say is None:
            return
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        timing = f"elapsed {duration(self.elapsed())}"
        paced = self.done - self._first
        if self.total and paced > 0 and self.done < self.total:
            left = self.elapsed() / paced * (self.total - self.done)
            timing += f", about {duration(left)} left"
        self.say(f"[{count}] {text}  ({timing})")
