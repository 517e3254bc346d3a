"""Random normal weight initialisation: every kernel drawn from N(0, std²), biases zero.

Once, after the model is built, every convolution (1-, 2- and 3-d) and linear layer, the
output layer included, is re-initialised as the authors' Keras ``RandomNormal(0, std)``
kernel initialiser with zero biases:

    W ~ N(0, std²) element-wise,   b ← 0

BatchNorm and any other parameters keep the model's own initialisation. Stage: INIT
(``setup``); the draw comes from this technique's own generator, so the same seed gives the
same weights whatever the model's constructor drew from the global RNG. Not a per-step
hook: it acts once, before training.

Deviation from the authors' code: their baseline uses std 0.05 and std 0 there would give an
all-zero network. Here ``std = 0`` (the default) means *off*: the model keeps its own
initialisation (PyTorch's defaults for the built-in models). To reproduce the paper's
baseline, set ``std=0.05``.

References:
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from dicelab.space import hp
from dicelab.stages import Category, Context
from dicelab.techniques._base import BaseTechnique, register_technique
from dicelab.techniques._sites import weight_layers


@register_technique
@dataclass(repr=False)
class WeightInit(BaseTechnique):
    """Draw every Conv/Linear kernel from N(0, std²) and zero its bias, once.

    Args:
        std: standard deviation of the kernel entries; ``0.0`` (default) keeps the model's
            own initialisation (the paper's baseline is 0.05).

    Example:
        >>> layer = nn.Linear(200, 300)
        >>> WeightInit(std=0.05).setup(layer, Context())
        >>> round(layer.weight.std().item(), 2), layer.bias.abs().max().item()
        (0.05, 0.0)
    """

    name: ClassVar[str] = "weight_init"
    category: ClassVar[Category] = Category.MODEL
    strength: ClassVar[str] = "std"
    priority: ClassVar[int] = 10

    std: float = hp(0.0, valid=(0.0, None), search=(0.0, 0.1), doc="kernel standard deviation")

    def setup(self, model: nn.Module, ctx: Context) -> None:
        """INIT: once, after the model is built; overwrites the kernels and biases in place."""
        if self.is_noop:
            return
        with torch.no_grad():
            for layer in weight_layers(model):
                weight = layer.weight
                weight.normal_(0.0, self.std, generator=self.rng(weight.device))
                if layer.bias is not None:
                    layer.bias.zero_()
