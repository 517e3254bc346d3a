"""Frozen random weights: a fixed random fraction of the parameters never trains.

The authors' "drnn" (randomized neural network): once, before training, every trainable
parameter tensor (kernels, biases, BatchNorm scales and shifts) gets a fixed binary mask

    M = (U > p),   U ~ Uniform[0, 1) element-wise

and at every training step its gradient is masked, ``g ← g ⊙ M``, so a fraction ≈ ``p`` of the
entries stays at its random initial value for the whole run (``p = 1`` freezes everything).
Stage: INIT (``setup`` draws the masks) and GRAD (``on_grads``, priority 20: after gradient
dropout, before gradient noise, as in the authors' ``train_step``). Training only.

As in the authors' code, frozen entries still receive gradient noise and weight noise when
those techniques are on (they act after the mask), and an optimizer's weight decay would
still move them (the paper uses none). With plain SGD, momentum or Adam a zero gradient from
the first step gives a zero update. The masks are part of :meth:`state_dict`, so a resumed run
freezes the same entries.

The masks are keyed by position among the parameters of ``model.parameters()`` that require
a gradient, which is the list :meth:`~dicelab.techniques.Injector.before_step` passes.

Category: MODEL, as the authors' code groups it with the other "network noise"
(``research/paper1-randomness.md`` §2); the paper's own category for it is not verified (an AI
review places randomized networks under "learning").

References:
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
    Gallicchio & Scardapane, "Deep randomized neural networks" (2020), arXiv:2002.12287.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from dicelab.space import hp
from dicelab.stages import Category, Context
from dicelab.techniques._base import BaseTechnique, register_technique


@register_technique
@dataclass(repr=False)
class FrozenWeights(BaseTechnique):
    """Keep a fixed random fraction ``p`` of every parameter tensor at its initial value.

    Args:
        p: fraction of the parameter entries frozen; ``0.0`` (default) is off, ``1.0``
            freezes the whole network.

    Example:
        >>> net = nn.Linear(100, 100)
        >>> frozen = FrozenWeights(p=0.5)
        >>> frozen.setup(net, Context())
        >>> [tuple(mask.shape) for mask in frozen.state_dict()["masks"]]
        [(100, 100), (100,)]
    """

    name: ClassVar[str] = "frozen_weights"
    category: ClassVar[Category] = Category.MODEL
    strength: ClassVar[str] = "p"
    priority: ClassVar[int] = 20

    p: float = hp(0.0, valid=(0.0, 1.0), search=(0.0, 1.0), doc="fraction of entries frozen")

    _masks: list[torch.Tensor] | None = field(default=None, init=False, repr=False, compare=False)

    def setup(self, model: nn.Module, ctx: Context) -> None:
        """INIT: once, after the model is built; draws one keep-mask per trainable tensor."""
        if self.is_noop:
            return
        self._masks = [
            torch.rand(p.shape, generator=self.rng(p.device), device=p.device) > self.p
            for p in model.parameters()
            if p.requires_grad
        ]

    def on_grads(self, params: Sequence[nn.Parameter], ctx: Context) -> None:
        """GRAD: after ``backward()``, before the optimizer step; zeroes the frozen entries."""
        if self.is_noop or not ctx.training:
            return
        masks = self._masks
        if masks is None:
            raise RuntimeError(
                "FrozenWeights.on_grads() called before setup(). Call setup(model, ctx) (or "
                "Injector.setup) once before training."
            )
        if len(params) != len(masks):
            raise ValueError(
                f"FrozenWeights: setup() drew masks for {len(masks)} trainable tensors but "
                f"on_grads() got {len(params)}. Pass the parameters of the model given to "
                "setup() that require a gradient, in model order."
            )
        for i, param in enumerate(params):
            grad = param.grad
            if grad is None:
                continue
            if masks[i].device != grad.device:  # masks loaded from a checkpoint on another device
                masks[i] = masks[i].to(grad.device)
            grad.mul_(masks[i])

    def state_dict(self) -> dict[str, Any]:
        """The keep-masks, one boolean tensor per trainable parameter tensor, in model order."""
        if self._masks is None:
            return {}
        return {"masks": [mask.clone() for mask in self._masks]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the masks of :meth:`state_dict` (an empty state keeps the current ones)."""
        if "masks" in state:
            self._masks = [mask.clone() for mask in state["masks"]]
