"""Training: the reference trainer and what a run reports.

This package is also callable: ``dicelab.train(...)`` is :func:`dicelab.api.train` (the
package and the function share the name ``dicelab.train``; whichever of the two Python finds
first, both uses work). Type checkers see the package: call :func:`dicelab.api.train` there.
"""

import sys
import types
from typing import Any

from dicelab.train.trainer import RunResult, Trainer, resolve_device

__all__ = ["RunResult", "Trainer", "resolve_device"]


class _CallablePackage(types.ModuleType):
    """This package, callable as :func:`dicelab.api.train`."""

    def __call__(self, *args: Any, **kwargs: Any) -> RunResult:
        from dicelab.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
