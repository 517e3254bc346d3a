"""The fully connected network of the paper (Altarabichi et al. 2024)."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from dicelab.models.base import register_model, require_at_least


@register_model("fc", "the paper's fully connected net: layers×(Linear→ReLU), linear output")
class FullyConnected(nn.Module):
    """``Flatten → [Linear(·, neurons) → ReLU] × layers → Linear(neurons, num_classes)``.

    Takes inputs of any shape (they are flattened). No BatchNorm: ``bn_momentum`` and
    ``bn_eps`` are accepted only so that every builder takes the same arguments. The network
    has ``layers + 1`` ``nn.Linear`` and ``layers`` ``nn.ReLU`` modules.

    Args:
        input_shape: shape of one example.
        num_classes: number of logits.
        bn_momentum: unused.
        bn_eps: unused.
        layers: number of hidden layers.
        neurons: units of each hidden layer.

    Raises:
        ConfigError: ``layers`` or ``neurons`` is below 1.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        layers: int = 2,
        neurons: int = 128,
    ) -> None:
        super().__init__()
        require_at_least("layers", layers, 1)
        require_at_least("neurons", neurons, 1)
        hidden: list[tuple[str, nn.Module]] = []
        in_features = math.prod(input_shape)
        for i in range(1, layers + 1):
            hidden += [(f"fc{i}", nn.Linear(in_features, neurons)), (f"relu{i}", nn.ReLU())]
            in_features = neurons
        self.flatten = nn.Flatten()
        self.hidden = nn.Sequential(OrderedDict(hidden))
        self.output = nn.Linear(neurons, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of inputs ``(B, *input_shape)``."""
        return self.output(self.hidden(self.flatten(x)))
