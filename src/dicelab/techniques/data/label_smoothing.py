"""Label smoothing: train against soft targets that mix the label with the uniform distribution.

Each target becomes

    t = (1 − eps)·onehot(y) + eps / K          (K classes)

so the cross-entropy against ``t`` equals Keras' ``categorical_crossentropy(label_smoothing=
eps)`` and PyTorch's ``F.cross_entropy(..., label_smoothing=eps)``. Targets that are already
soft ``(B, K)`` (from an earlier DATA technique) get the same mixing, ``(1 − eps)·y + eps/K``.
Stage: DATA, last in the authors' order, after label noise, so a flipped label is smoothed
too. Training only; evaluation scores the model against the hard labels. Draws no random
numbers: the result does not depend on the seed.

References:
    Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
    CVPR 2016, arXiv:1512.00567.
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from dicelab.space import hp
from dicelab.stages import Category, Context
from dicelab.techniques._base import BaseTechnique, register_technique


@register_technique
@dataclass(repr=False)
class LabelSmoothing(BaseTechnique):
    """Replace each target by ``(1 − eps)·onehot(y) + eps / K``.

    Args:
        eps: weight of the uniform distribution in the target; ``0.0`` (default) is off.

    Example:
        >>> _, t = LabelSmoothing(eps=0.1).on_batch(
        ...     torch.zeros(1, 2), torch.tensor([1]), Context(num_classes=4)
        ... )
        >>> t
        tensor([[0.0250, 0.9250, 0.0250, 0.0250]])
    """

    name: ClassVar[str] = "label_smoothing"
    category: ClassVar[Category] = Category.DATA
    strength: ClassVar[str] = "eps"
    priority: ClassVar[int] = 70
    deterministic: ClassVar[bool] = True

    eps: float = hp(0.0, valid=(0.0, 1.0), search=(0.0, 1.0), doc="uniform mass in targets")

    def on_batch(
        self, x: torch.Tensor, y: torch.Tensor, ctx: Context
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.is_noop or not ctx.training:
            return x, y
        if y.is_floating_point():
            soft = y
        else:
            if ctx.num_classes < 2:
                raise RuntimeError(
                    "label_smoothing needs the number of classes: call "
                    "Injector.setup(model, num_classes=K, ...) before Injector.data()"
                )
            dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
            soft = F.one_hot(y, ctx.num_classes).to(dtype)
        return x, soft * (1.0 - self.eps) + self.eps / soft.shape[-1]
