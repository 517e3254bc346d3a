"""Build the base optimizer a configuration names (SGD, SGD with momentum, Adam)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from dicelab.config import OptimizerConfig


def build_optimizer(
    config: OptimizerConfig, params: Iterable[nn.Parameter]
) -> torch.optim.Optimizer:
    """A ``torch.optim`` optimizer for ``params`` as ``config`` describes.

    ``momentum`` is PyTorch's SGD with momentum (heavy ball, v ← μv + g, w ← w − ηv), which
    for a constant learning rate takes the same steps as the Keras form the authors used.
    Adam's epsilon defaults to Keras' 1e-7.
    """
    if config.name == "adam":
        return torch.optim.Adam(
            params,
            lr=config.lr,
            betas=(config.beta1, config.beta2),
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
    momentum = config.momentum if config.name == "momentum" else 0.0
    return torch.optim.SGD(
        params, lr=config.lr, momentum=momentum, weight_decay=config.weight_decay
    )
