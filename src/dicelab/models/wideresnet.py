"""Wide residual networks (Zagoruyko & Komodakis 2016), without dropout."""

from __future__ import annotations

import torch
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.models.base import image_shape, register_model, require_at_least


class WideBasicBlock(nn.Module):
    """Pre-activation block: ``conv2(relu2(bn2(conv1(relu1(bn1(x)))))) + shortcut``.

    When the stride or the channel count changes, the shortcut is a 1×1 convolution of the
    pre-activated input ``relu1(bn1(x))``, as in the authors' code; otherwise it is ``x``.
    The paper's optional dropout between the convolutions is left out: in dicelab dropout is
    a technique attached by hooks.

    Args:
        in_channels: channels of the input.
        channels: channels of the output.
        stride: stride of the first convolution (and of the projection shortcut).
        bn_momentum: BatchNorm momentum (PyTorch convention).
        bn_eps: BatchNorm epsilon.
    """

    def __init__(
        self, in_channels: int, channels: int, stride: int, bn_momentum: float, bn_eps: float
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=bn_eps, momentum=bn_momentum)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=bn_eps, momentum=bn_momentum)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.shortcut: nn.Conv2d | None = None
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for feature maps ``x``."""
        activated = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(activated))))
        return out + (x if self.shortcut is None else self.shortcut(activated))


@register_model(
    "wideresnet", "WideResNet-depth-widen with pre-activation blocks, no dropout (images)"
)
class WideResNet(nn.Module):
    """WRN-``depth``-``widen``.

    A 3×3 stem with 16 channels, three groups of ``n = (depth − 4) / 6`` :class:`WideBasicBlock`
    with ``16·widen``, ``32·widen``, ``64·widen`` channels and strides 1, 2, 2, then
    ``BN → ReLU → global average pool → Linear``. Convolutions have no bias. The network has
    ``6n + 1`` ``nn.ReLU``, ``6n + 4`` ``nn.Conv2d`` (3 of them 1×1 shortcuts) and 1
    ``nn.Linear``: 13, 16 and 1 for WRN-16-8.

    Args:
        input_shape: ``(channels, height, width)`` of one example.
        num_classes: number of logits.
        bn_momentum: BatchNorm momentum (PyTorch convention).
        bn_eps: BatchNorm epsilon.
        depth: total depth; ``depth − 4`` must be a positive multiple of 6.
        widen: the widening factor k.

    Raises:
        ConfigError: ``depth`` (field ``model.depth``) or ``widen`` is invalid, or the input
            is not an image.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        depth: int = 16,
        widen: int = 8,
    ) -> None:
        super().__init__()
        channels, _, _ = image_shape("wideresnet", input_shape)
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ConfigError(
                "model.depth",
                depth,
                "expected 6n + 4 for an integer n ≥ 1 (10, 16, 22, 28, 40, …)",
            )
        require_at_least("widen", widen, 1)
        per_group = (depth - 4) // 6
        self.conv1 = nn.Conv2d(channels, 16, 3, padding=1, bias=False)
        groups: list[nn.Module] = []
        in_channels = 16
        for base, stride in ((16, 1), (32, 2), (64, 2)):
            out_channels = base * widen
            blocks = [
                WideBasicBlock(
                    in_channels if i == 0 else out_channels,
                    out_channels,
                    stride if i == 0 else 1,
                    bn_momentum,
                    bn_eps,
                )
                for i in range(per_group)
            ]
            groups.append(nn.Sequential(*blocks))
            in_channels = out_channels
        self.group1, self.group2, self.group3 = groups
        self.bn = nn.BatchNorm2d(in_channels, eps=bn_eps, momentum=bn_momentum)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, C, H, W)``."""
        out = self.group3(self.group2(self.group1(self.conv1(x))))
        out = self.relu(self.bn(out))
        return self.linear(self.flatten(self.pool(out)))
