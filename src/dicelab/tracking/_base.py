"""The tracker interface, the fan-out that guards a run against its trackers, and helpers.

A tracker mirrors what a run writes to its own folder into an experiment tracker: the
configuration as hyperparameters when the run starts, one row of metrics per epoch (the rows of
``metrics.jsonl``) and the final result. The run folder stays the source of truth: a tracker
that fails (a full disk, a broken package, a locked database) is reported in one warning line
and switched off for the rest of the run, which continues.
"""

from __future__ import annotations

import abc
import importlib.util
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from dicelab.config import flatten
from dicelab.exceptions import ConfigError

_log = logging.getLogger("dicelab.tracking")

#: A hyperparameter value every tracker accepts.
Param = str | int | float | bool


class Tracker(abc.ABC):
    """One experiment tracker's view of one run.

    The calls come in this order: :meth:`start` once, :meth:`log_metrics` once per epoch,
    :meth:`log_result` at most once, :meth:`end` once. An adapter imports its package in
    :meth:`start`, so ``import dicelab.tracking`` needs none of them.

    Args:
        root: the folder the tracker writes under (a run folder, or a search folder).
        run: the run's sub-folder name when several runs share ``root`` (a search's trials);
            ``None`` when ``root`` is the run's own folder.
        experiment: the experiment (MLflow) or project (W&B) the run belongs to.
    """

    #: The name in the configuration's ``log`` list.
    name: ClassVar[str]
    #: The module that must be importable.
    package: ClassVar[str]
    #: The dicelab extra that installs it.
    extra: ClassVar[str]

    def __init__(self, root: Path, *, run: str | None = None, experiment: str = "dicelab"):
        self.root = Path(root)
        self.run = run
        self.experiment = experiment

    @abc.abstractmethod
    def start(self, name: str, params: Mapping[str, Param]) -> None:
        """Called once before the first epoch: open the run and record its hyperparameters."""

    @abc.abstractmethod
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Called after every epoch with that epoch's numeric metrics; ``step`` is the epoch."""

    @abc.abstractmethod
    def log_result(self, result: Mapping[str, float]) -> None:
        """Called once when the run ends with a result: its final numbers."""

    @abc.abstractmethod
    def end(self, status: str) -> None:
        """Called last: close the run (``status``: completed, diverged, stopped, failed...)."""

    @classmethod
    def check_installed(cls) -> None:
        """Raise a :class:`ConfigError` naming the extra when the package is missing."""
        if importlib.util.find_spec(cls.package) is None:
            raise ConfigError(
                "log",
                cls.name,
                f"needs the {cls.package} package, which is not installed",
                hint=f'Install it with: pip install "dicelab[{cls.extra}]".',
            )


class Trackers:
    """Several trackers behind one set of calls; a failing tracker is dropped, not the run.

    Every call reaches each tracker still on. One that raises is reported in one warning line
    (logger ``dicelab.tracking``) and gets no further calls, so a broken tracker costs a line,
    never the run's own files or results.
    """

    def __init__(self, trackers: Sequence[Tracker]) -> None:
        self.trackers = list(trackers)

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def _each(self, what: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, what)(*args)
            except Exception as err:  # any failure of a third-party package: warn, go on
                self.trackers.remove(tracker)
                detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
                _log.warning(
                    "dicelab: %s logging failed in %s (%s%s); it is off for the rest of this "
                    "run, which continues (its own folder keeps every result)",
                    tracker.name,
                    what,
                    type(err).__name__,
                    f": {detail}" if detail else "",
                )

    def start(self, name: str, params: Mapping[str, Param]) -> None:
        self._each("start", name, params)

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        numeric = numbers(metrics)
        if numeric:
            self._each("log_metrics", numeric, step)

    def log_result(self, result: Mapping[str, Any]) -> None:
        self._each("log_result", numbers(result))

    def end(self, status: str) -> None:
        self._each("end", status)
        self.trackers = []


def numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric entries of ``values`` (booleans and text left out), as floats."""
    return {
        key: float(value)
        for key, value in values.items()
        if isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    }


def flat_params(data: Mapping[str, Any], prefix: str = "") -> dict[str, Param]:
    """Nested configuration data as flat ``dotted.key: value`` hyperparameters.

    Every tracker takes scalars only: a list becomes its text (``[bias, norm]``), ``None``
    becomes ``"null"`` (as YAML writes it), an empty mapping ``"{}"``.

    >>> flat_params({"seed": 0, "optimizer": {"lr": 0.01, "clip_grad_norm": None}, "log": []})
    {'seed': 0, 'optimizer.lr': 0.01, 'optimizer.clip_grad_norm': 'null', 'log': '[]'}
    """
    return {key: _param(value) for key, value in flatten(data, prefix).items()}


def _param(value: Any) -> Param:
    """One configuration leaf as a tracker's scalar (see :func:`flat_params`)."""
    if isinstance(value, Mapping):
        return "{}"
    if value is None:
        return "null"
    if isinstance(value, (str, int, float, bool)):
        return value
    return "[" + ", ".join(str(v) for v in value) + "]"
