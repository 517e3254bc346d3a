"""Random normal weight initialisation: every kernel drawn from N(0, std²), biases zero.

Once, after the model is built, every convolution (1-, 2- and 3-d) and linear layer, the
output layer included, is re-initialised as the authors' Keras ``RandomNormal(0, std)``
kernel initialiser with zero biases:

    W ~ N(0, std²) element-wise,   b ← 0

BatchNorm and any other parameters keep the model's own initialisation. Stage: INIT
(``setup``); the draw comes from this technique's own generator, so the same seed gives the
same weights whatever the model's constructor drew from the global RNG. Not a per-step
hook: it acts once, before training.

Deviation from the authors' code: their baseline uses std 0.05, and std 0 there gives an
all-zero network (``Initializer.py``/``NeuralNetwork.py`` pass the gene to Keras
``RandomNormal(0, std)`` for every kernel; the search's clipping lands on 0, and 13 of the
1,152 rows of the CIFAR-10 20-epoch log hold exactly 0, mostly at chance). Here ``std = 0``
(the default) means *off*: the model keeps its own initialisation (PyTorch's defaults for the
built-in models), which is what a user asking for "no init randomness" means. ``zeros=True``
gives the authors' behaviour (all-zero kernels and biases at ``std = 0``, with a warning) for
faithful reproductions. To reproduce the paper's baseline, set ``std=0.05``.

References:
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
"""

from __future__ import annotations

import warnings
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
        zeros: with ``std = 0``, set every kernel and bias to zero as the authors' code does,
            instead of keeping the model's initialisation.

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
    zeros: bool = hp(
        False, choices=(False, True), doc="std 0 gives all-zero kernels (the authors' code)"
    )

    def hyperparameters(self) -> dict[str, float | bool]:
        """``std``, and ``zeros`` only when set: configurations written before ``zeros``
        existed mean and hash the same (their finished runs are still recognised)."""
        return {"std": self.std, "zeros": True} if self.zeros else {"std": self.std}

    def __repr__(self) -> str:
        return f"WeightInit(std={self.std!r}, zeros={self.zeros!r})"

    @property
    def is_noop(self) -> bool:
        """Off at ``std = 0`` unless ``zeros`` asks for the authors' all-zero kernels."""
        return self.std == 0 and not self.zeros

    def setup(self, model: nn.Module, ctx: Context) -> None:
        """INIT: once, after the model is built; overwrites the kernels and biases in place."""
        if self.is_noop:
            return
        if self.std == 0:
            warnings.warn(
                "weight_init: std 0 with zeros=true sets every kernel to zero, as the authors' "
                "code does (the network then learns little or nothing)",
                stacklevel=2,
            )
        with torch.no_grad():
            for layer in weight_layers(model):
                weight = layer.weight
                weight.normal_(0.0, self.std, generator=self.rng(weight.device))
                if layer.bias is not None:
                    layer.bias.zero_()
