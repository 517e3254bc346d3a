"""CIFAR ResNet-18 (He et al. 2016), the variant used by the SAM and RWP code bases."""

from __future__ import annotations

import torch
from torch import nn

from dicelab.models.base import image_shape, register_model, require_at_least


class BasicBlock(nn.Module):
    """Post-activation residual block: ``relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))``.

    The shortcut is the identity, or a 1×1 convolution with BatchNorm when the stride or the
    channel count changes. Both ReLUs are separate modules so that hooks can tell them apart.

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
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, eps=bn_eps, momentum=bn_momentum)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=bn_eps, momentum=bn_momentum)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels, eps=bn_eps, momentum=bn_momentum),
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for feature maps ``x``."""
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


@register_model(
    "resnet18", "CIFAR ResNet-18: 3×3 stem, no max-pool, BasicBlocks [2,2,2,2] (images)"
)
class ResNet18(nn.Module):
    """ResNet-18 for small images.

    Stem ``Conv2d 3×3 (stride 1) → BN → ReLU`` without max-pool, four stages of two
    :class:`BasicBlock` with ``width·(1, 2, 4, 8)`` channels and strides ``(1, 2, 2, 2)``,
    global average pooling and a linear layer. Convolutions have no bias. The network has 20
    ``nn.Conv2d`` (3 of them 1×1 shortcuts), 17 ``nn.ReLU`` (none shared) and 1 ``nn.Linear``.

    Args:
        input_shape: ``(channels, height, width)`` of one example.
        num_classes: number of logits.
        bn_momentum: BatchNorm momentum (PyTorch convention).
        bn_eps: BatchNorm epsilon.
        width: channels of the stem and the first stage (64 in the standard network).

    Raises:
        ConfigError: ``width`` is below 1, or the input is not an image.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        width: int = 64,
    ) -> None:
        super().__init__()
        channels, _, _ = image_shape("resnet18", input_shape)
        require_at_least("width", width, 1)
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=bn_eps, momentum=bn_momentum)
        self.relu = nn.ReLU()
        stages: list[nn.Module] = []
        in_channels = width
        for multiplier, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            out_channels = width * multiplier
            stages.append(
                nn.Sequential(
                    BasicBlock(in_channels, out_channels, stride, bn_momentum, bn_eps),
                    BasicBlock(out_channels, out_channels, 1, bn_momentum, bn_eps),
                )
            )
            in_channels = out_channels
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, C, H, W)``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(self.flatten(self.pool(out)))
