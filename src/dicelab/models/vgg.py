"""The VGG-style network of the paper (Altarabichi et al. 2024, arXiv 2404.03992)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.models.base import image_shape, register_model, require_at_least


@register_model(
    "vgg",
    "the paper's VGG: blocks of 2×(conv3×3→ReLU→BN)+max-pool, dense head (images)",
)
class VGG(nn.Module):
    """VGG-style CNN as in the authors' Keras code.

    Block ``b`` (0-based) has ``f = min(width·2^b, 512)`` filters and is
    ``[Conv2d 3×3 (padding 1) → ReLU → BatchNorm2d] ×2 → MaxPool 2×2``; note the order
    conv→ReLU→BN, which is what the authors wrote (not the more common conv→BN→ReLU). The head
    is ``Flatten → Linear(·, dense) → ReLU → Linear(dense, num_classes)``, giving logits.
    Pooling rounds down, so 8×8 inputs end at 1×1 after 3 blocks, 28×28 at 3×3, 32×32 at 4×4.

    The network has ``2·blocks`` ``nn.Conv2d``, ``2·blocks + 1`` ``nn.ReLU`` (each its own
    module, called once per forward) and 2 ``nn.Linear`` modules; technique hooks rely on it.

    The BatchNorm defaults are PyTorch's. The authors' Keras defaults (the ``"keras"`` preset:
    momentum 0.01 in PyTorch terms, eps 1e-3) leave the running statistics far behind the
    weights on short runs and evaluation collapses; see :mod:`dicelab.models`.

    Args:
        input_shape: ``(channels, height, width)`` of one example.
        num_classes: number of logits.
        bn_momentum: BatchNorm momentum (PyTorch convention).
        bn_eps: BatchNorm epsilon.
        blocks: number of conv blocks; each halves the spatial size.
        width: filters of the first block.
        dense: units of the hidden dense layer.

    Raises:
        ConfigError: an option is out of range, or ``blocks`` pools the input down to 0×0
            (field ``model.blocks``, naming the largest count that fits).
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        blocks: int = 3,
        width: int = 32,
        dense: int = 128,
    ) -> None:
        super().__init__()
        channels, height, width_px = image_shape("vgg", input_shape)
        require_at_least("blocks", blocks, 1)
        require_at_least("width", width, 1)
        require_at_least("dense", dense, 1)
        largest = max(min(height, width_px), 0).bit_length() - 1  # floor(log2(min side))
        if blocks > largest:
            raise ConfigError(
                "model.blocks",
                blocks,
                f"expected at most {largest} for {height}×{width_px} inputs",
                hint="Each block halves the height and width (rounding down) and the last "
                "block must leave at least 1×1.",
            )
        stages: list[nn.Module] = []
        in_channels = channels
        for b in range(blocks):
            filters = min(width * 2**b, 512)
            stages.append(
                nn.Sequential(
                    OrderedDict(
                        [
                            ("conv1", nn.Conv2d(in_channels, filters, 3, padding=1)),
                            ("relu1", nn.ReLU()),
                            ("bn1", nn.BatchNorm2d(filters, eps=bn_eps, momentum=bn_momentum)),
                            ("conv2", nn.Conv2d(filters, filters, 3, padding=1)),
                            ("relu2", nn.ReLU()),
                            ("bn2", nn.BatchNorm2d(filters, eps=bn_eps, momentum=bn_momentum)),
                            ("pool", nn.MaxPool2d(2)),
                        ]
                    )
                )
            )
            in_channels = filters
            height, width_px = height // 2, width_px // 2
        self.features = nn.Sequential(*stages)
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("flatten", nn.Flatten()),
                    ("fc1", nn.Linear(in_channels * height * width_px, dense)),
                    ("relu", nn.ReLU()),
                    ("fc2", nn.Linear(dense, num_classes)),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, C, H, W)``."""
        return self.classifier(self.features(x))
