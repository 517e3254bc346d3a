"""DropConnect: random masking of the inputs (or weights) of every hidden weight layer.

``mode="input"`` (default) follows the authors' ``Layer.DropConnect``: in training, the input
``x`` of every convolution and linear layer except the output layer is multiplied by a fresh
mask of its own shape, without rescaling:

    m ~ Bernoulli(1 − p) element-wise (shape of x),   y = layer(x ⊙ m)

This behaves like unscaled dropout on the layer's input, not like the weight mask of Wan et
al.; the expected pre-activation shrinks by ``1 − p``. It is a forward pre-hook.

``mode="weight"`` is Wan et al.'s DropConnect: the weight entries are masked (keep ``1 − p``,
no rescaling, bias untouched) with a fresh mask at every forward pass:

    M ~ Bernoulli(1 − p) element-wise (shape of W),   y = layer(x) computed with W ⊙ M and b

It is a forward hook that recomputes the layer's output with the masked weight through the
layer's functional form (``F.linear``, or the convolution's ``_conv_forward``); the stored
weight is never modified. Cost: each hidden layer runs twice in training (the discarded
unmasked output and the masked one), plus a weight-sized mask.

The output layer is the last ``nn.Linear`` in registration order (the last convolution when
there is none), as the authors wrap every Conv2D/Dense but the softmax layer. Stage: MODEL;
training only: identity when the layer is in ``eval()`` mode or the injector is paused.

How ``mode="input"`` draws: on the CPU, for float32 and bfloat16 inputs, with dicelab's fused
kernel (:mod:`dicelab.techniques._fused`: Philox4x32-10 keyed from this technique's stream;
the mask is drawn and applied in one pass and kept as one bit per entry for the backward
pass); elsewhere, or without a C compiler, with torch's generator. Both keep an entry with
probability ``1 − p``; ``fused_draws`` in a run's metadata says which route a run took.

References:
    Wan et al., "Regularization of neural networks using DropConnect", ICML 2013.
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from dicelab.exceptions import ConfigError
from dicelab.space import hp
from dicelab.stages import Category, Context
from dicelab.techniques._base import BaseTechnique, register_technique
from dicelab.techniques._draw import fill_like
from dicelab.techniques._fused import apply_keep
from dicelab.techniques._sites import WeightLayer, hidden_weight_layers


@register_technique
@dataclass(repr=False)
class Dropconnect(BaseTechnique):
    """Mask the input (or the weight) of every hidden Conv/Linear layer, no rescaling.

    Args:
        p: probability that an input (or weight) entry is masked; ``0.0`` (default) is off.
        mode: ``"input"`` (the authors' code) or ``"weight"`` (Wan et al. 2013).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> len(Dropconnect(p=0.3).attach(net, Context()))  # the output layer is left out
        1
    """

    name: ClassVar[str] = "dropconnect"
    category: ClassVar[Category] = Category.MODEL
    strength: ClassVar[str] = "p"
    priority: ClassVar[int] = 30

    p: float = hp(0.0, valid=(0.0, 1.0), search=(0.0, 0.5), doc="mask probability, below 1")
    mode: str = hp("input", choices=("input", "weight"), doc="what is masked")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.p == 1.0:  # every input would be zero: the network would output its biases
            raise ConfigError(f"techniques.{self.name}.p", self.p, "must lie in [0, 1)")

    def attach(self, model: nn.Module, ctx: Context) -> list[RemovableHandle]:
        """MODEL: once, after ``setup``; a hook on every Conv/Linear but the output layer."""
        if self.is_noop:
            return []

        def mask_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            if not (module.training and ctx.training):
                return None
            x = args[0]
            gen = self.rng(x.device)
            kept = apply_keep(x, self.p, gen)  # fused draw and mask, where it takes x
            if kept is None:
                keep = fill_like(x, lambda t: t.uniform_(generator=gen))  # in x's layout
                kept = x * keep.ge_(self.p)  # (U >= p) in the draw's own buffer
            return (kept, *args[1:])

        def mask_weight(
            module: WeightLayer, args: tuple[Any, ...], out: torch.Tensor
        ) -> torch.Tensor | None:
            if not (module.training and ctx.training):
                return None
            weight = module.weight
            gen = self.rng(weight.device)
            draw = fill_like(weight.detach(), lambda t: t.uniform_(generator=gen))
            masked = weight.masked_fill(draw < self.p, 0.0)
            if isinstance(module, nn.Linear):
                return F.linear(args[0], masked, module.bias)
            return module._conv_forward(args[0], masked, module.bias)

        layers = hidden_weight_layers(model)
        if self.mode == "input":
            return [layer.register_forward_pre_hook(mask_input) for layer in layers]
        return [layer.register_forward_hook(mask_weight) for layer in layers]
