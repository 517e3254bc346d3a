"""Where a technique acts: the paper's categories and the per-step context.

Categories are a reporting taxonomy (reports, correlations, "ablation by category"); *when* a
technique acts is set by which hooks it overrides (see :class:`dicelab.techniques.BaseTechnique`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch


class Category(str, Enum):
    """The paper's four stages of randomness injection."""

    DATA = "data"
    MODEL = "model"
    OPTIMIZATION = "optimization"
    LEARNING = "learning"


@dataclass
class Context:
    """What the hooks may read about the current step; the :class:`Injector` keeps it current.

    Attributes:
        step: updates done so far (the authors' ``optimizer.iterations``, from 0).
        epoch: the current epoch, from 0.
        training: ``False`` while evaluating or recalibrating; every hook is then an identity.
        num_classes: classes of the task (label techniques need it).
        train_size: examples in the training set (per-example techniques need it).
        epochs: planned number of epochs (schedules need it).
        indices: dataset indices ``(B,)`` of the current batch, when the loop provides them.
    """

    step: int = 0
    epoch: int = 0
    training: bool = True
    num_classes: int = 0
    train_size: int = 0
    epochs: int = 0
    indices: torch.Tensor | None = None
