"""The reference networks of MNIST-1D (Greydanus 2020, ``notebooks/models.py``)."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from dicelab.models.base import input_rank_error, register_model, require_at_least

#: ``(kernel, stride, padding)`` of the three convolutions of the reference ConvBase.
_CONV_LAYERS = ((5, 2, 1), (3, 2, 1), (3, 2, 1))


@register_model("cnn1d", "MNIST-1D reference ConvBase: 3×(Conv1d→ReLU), linear output (1-D)")
class ConvNet1D(nn.Module):
    """The MNIST-1D reference ``ConvBase``.

    ``Conv1d(C→channels, k5, s2, p1) → ReLU → Conv1d(k3, s2, p1) → ReLU → Conv1d(k3, s2, p1)
    → ReLU → Flatten → Linear(→num_classes)``. The reference hard-codes the flattened size
    (125 for length 40 and 25 channels); here it follows from ``input_shape``. An input of
    shape ``(L,)`` is viewed as one channel, as the reference does. No BatchNorm:
    ``bn_momentum`` and ``bn_eps`` are accepted only so that every builder takes the same
    arguments. The network has 3 ``nn.Conv1d``, 3 ``nn.ReLU`` and 1 ``nn.Linear``.

    Args:
        input_shape: ``(L,)`` or ``(channels, L)`` of one example, ``L ≥ 3``.
        num_classes: number of logits.
        bn_momentum: unused.
        bn_eps: unused.
        channels: channels of every convolution.

    Raises:
        ConfigError: ``channels`` is below 1, or the input is not a sequence of length ≥ 3.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        channels: int = 25,
    ) -> None:
        super().__init__()
        if len(input_shape) not in (1, 2) or input_shape[-1] < 3:
            raise input_rank_error(
                "cnn1d", "(length,) or (channels, length), length ≥ 3", input_shape
            )
        require_at_least("channels", channels, 1)
        length = int(input_shape[-1])
        in_channels = int(input_shape[0]) if len(input_shape) == 2 else 1
        self.reshape: nn.Module = (
            nn.Unflatten(1, (1, length)) if len(input_shape) == 1 else nn.Identity()
        )
        layers: list[tuple[str, nn.Module]] = []
        for i, (kernel, stride, padding) in enumerate(_CONV_LAYERS, start=1):
            conv = nn.Conv1d(in_channels, channels, kernel, stride=stride, padding=padding)
            layers += [(f"conv{i}", conv), (f"relu{i}", nn.ReLU())]
            in_channels = channels
            length = (length + 2 * padding - kernel) // stride + 1
        layers.append(("flatten", nn.Flatten()))
        self.features = nn.Sequential(OrderedDict(layers))
        self.flat_features = channels * length
        self.linear = nn.Linear(self.flat_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of sequences ``(B, L)`` or ``(B, C, L)``."""
        return self.linear(self.features(self.reshape(x)))


@register_model("mlp1d", "MNIST-1D reference MLPBase: 3 linear layers, residual middle (1-D)")
class MLP1D(nn.Module):
    """The MNIST-1D reference ``MLPBase``, residual connection included.

    ``h1 = relu1(linear1(flatten(x)))``, ``h2 = relu2(linear2(h1)) + h1`` (the reference adds
    the middle layer's input back, after its ReLU), ``logits = linear3(h2)``. No BatchNorm:
    ``bn_momentum`` and ``bn_eps`` are accepted only so that every builder takes the same
    arguments. The network has 3 ``nn.Linear`` and 2 ``nn.ReLU`` modules.

    Args:
        input_shape: shape of one example (flattened; ``(40,)`` or ``(1, 40)`` for MNIST-1D).
        num_classes: number of logits.
        bn_momentum: unused.
        bn_eps: unused.
        hidden: units of both hidden layers.

    Raises:
        ConfigError: ``hidden`` is below 1.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        hidden: int = 100,
    ) -> None:
        super().__init__()
        require_at_least("hidden", hidden, 1)
        self.flatten = nn.Flatten()
        self.linear1 = nn.Linear(math.prod(input_shape), hidden)
        self.relu1 = nn.ReLU()
        self.linear2 = nn.Linear(hidden, hidden)
        self.relu2 = nn.ReLU()
        self.linear3 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of inputs ``(B, *input_shape)``."""
        h1 = self.relu1(self.linear1(self.flatten(x)))
        h2 = self.relu2(self.linear2(h1)) + h1
        return self.linear3(h2)
