"""Dropout: random zeroing of activations, with inverted scaling (Srivastava et al. 2014).

In training, each entry of the output ``h`` of a dropout site is kept with probability
``1 − p`` and the kept entries are scaled up, as Keras ``Dropout`` does:

    m ~ Bernoulli(1 − p) element-wise,   h ← h ⊙ m / (1 − p)

so the expected activation is unchanged and evaluation needs no rescaling. A fresh mask is
drawn at every forward pass, from this technique's own generator (``F.dropout`` has no
generator argument). Stage: MODEL, a forward hook on each site; identity in evaluation (when
the module is in ``eval()`` mode or the injector is paused).

Where (the rule of :mod:`dicelab.techniques._sites`, which works on any ``nn.Module``): on the
output of every pooling module (``nn.MaxPool*``, ``nn.AvgPool*``, ``nn.AdaptiveAvgPool*``,
``nn.AdaptiveMaxPool*``), and of every activation module (``nn.ReLU``, ``nn.GELU``,
``nn.Tanh``, …) whose next sibling in its parent's registration order is a ``nn.Linear`` or
convolution (looking through ``nn.Flatten``/``nn.Unflatten``/``nn.Identity``; the last child
of a container takes the container's next sibling). This reproduces the authors' positions:

* paper VGG: after each block's max-pool and after the dense ReLU
  (``features.{0,1,2}.pool`` and ``classifier.relu``);
* paper FC net: after every hidden ReLU (their ``Dense → NoisyReLU → Dropout``);
* a ResNet block ``conv1 → bn1 → relu1 → conv2``: between the convolutions, WideResNet's
  dropout position. On dicelab's pre-activation ``wideresnet`` the rule also picks
  ``relu1``, which feeds ``conv1`` and the projection shortcut.

A module called more than once in a forward pass is masked at every call (a fresh mask each
time). Functional calls (``F.relu``, ``F.max_pool2d``) are not modules and get no dropout.

References:
    Srivastava et al., "Dropout: a simple way to prevent neural networks from overfitting",
    JMLR 15 (2014).
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from dicelab.exceptions import ConfigError
from dicelab.space import hp
from dicelab.stages import Category, Context
from dicelab.techniques._base import BaseTechnique, register_technique
from dicelab.techniques._draw import fill_like
from dicelab.techniques._sites import dropout_sites


@register_technique
@dataclass(repr=False)
class Dropout(BaseTechnique):
    """Inverted dropout on pooling outputs and on activations that feed a weight layer.

    Args:
        p: probability that an activation is zeroed; ``0.0`` (default) is off.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> handles = Dropout(p=0.5).attach(net, Context())
        >>> len(handles)  # one site: the ReLU followed by the output layer
        1
    """

    name: ClassVar[str] = "dropout"
    category: ClassVar[Category] = Category.MODEL
    strength: ClassVar[str] = "p"
    priority: ClassVar[int] = 50

    p: float = hp(0.0, valid=(0.0, 1.0), search=(0.0, 0.5), doc="drop probability, below 1")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.p == 1.0:  # the kept entries would be scaled by 1 / 0
            raise ConfigError(f"techniques.{self.name}.p", self.p, "must lie in [0, 1)")

    def attach(self, model: nn.Module, ctx: Context) -> list[RemovableHandle]:
        """MODEL: once, after ``setup``; a forward hook on every dropout site."""
        if self.is_noop:
            return []
        scale = 1.0 / (1.0 - self.p)

        def hook(module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor | None:
            if not (module.training and ctx.training):
                return None
            # keep = (U >= p)·scale, built in place in the draw's own buffer: two passes fewer
            # than masked_fill + multiply, with the same values.
            gen = self.rng(out.device)
            keep = fill_like(out, lambda t: t.uniform_(generator=gen))  # out's memory layout
            return out * keep.ge_(self.p).mul_(scale)

        return [module.register_forward_hook(hook) for _, module in dropout_sites(model)]
