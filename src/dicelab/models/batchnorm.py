"""Re-estimating BatchNorm running statistics from data.

With a small momentum (Keras' default 0.99, i.e. 0.01 in PyTorch terms) the running mean and
variance trail the weights by hundreds of steps, so a short run evaluates with statistics
that belong to a much earlier network. Recomputing them as an exact average over training
batches, with the final weights, removes that lag.

:func:`stale_weight` says how much of a running estimate still comes from its starting values,
so a trainer can recalibrate only while that matters (``train.recalibrate_bn: auto``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

_BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Recompute every BatchNorm's running mean/var as the exact average over ``batches``.

    Each layer's momentum is set to ``None`` (PyTorch then keeps a cumulative average: every
    batch weighs the same, so use batches of equal size), its statistics are reset, the
    batches go through the model in training mode, and afterwards each layer's momentum and
    every module's train/eval mode are restored. Parameters are not changed.

    Args:
        model: the network; a model without BatchNorm layers is left untouched.
        batches: float inputs already on the model's device.

    Raises:
        ValueError: ``batches`` is empty (the statistics are then left as they were).
    """
    layers = [
        m for m in model.modules() if isinstance(m, _BATCHNORM_TYPES) and m.track_running_stats
    ]
    if not layers:
        return
    iterator = iter(batches)
    first = next(iterator, None)
    if first is None:
        raise ValueError("recalibrate_batchnorm needs at least one batch")
    modes = {m: m.training for m in model.modules()}
    momenta = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.momentum = None
            layer.reset_running_stats()
        model.train()
        for batch in itertools.chain([first], iterator):
            model(batch)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        for module, training in modes.items():
            module.training = training


def stale_weight(model: nn.Module, updates: int) -> float:
    """The largest weight, over ``model``'s BatchNorm layers, that the running statistics
    still give to values from before the last ``updates`` training batches.

    A layer with PyTorch momentum ``m`` keeps ``(1 - m) ** n`` of its starting estimate after
    ``n`` updates (the rest is an exponential average of the ``n`` batches), so this is
    ``(1 - min m) ** updates``: 1.0 before any update, about 0.008 after 46 updates with the
    ``pytorch`` preset (m = 0.1) and after 480 with ``keras`` (m = 0.01). A layer with a
    cumulative average (``momentum=None``) never forgets its earliest batches, so it counts
    as 1.0 whatever ``updates``. A model without tracking BatchNorm layers gives 0.0.
    """
    weight = 0.0
    for module in model.modules():
        if isinstance(module, _BATCHNORM_TYPES) and module.track_running_stats:
            momentum = module.momentum
            kept = 1.0 if momentum is None else (1.0 - momentum) ** max(updates, 0)
            weight = max(weight, kept)
    return weight


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Inside the block, BatchNorm layers in training mode normalise with the batch's
    statistics as usual but leave their running mean, variance and batch count untouched.

    Used for the perturbed pass of SAM and of the mixed RWP methods, so the running
    statistics describe the clean weights only. Unlike setting ``momentum=0`` this also works
    for a cumulative average (``momentum=None``) and leaves ``num_batches_tracked`` alone.
    """
    layers = [
        m for m in model.modules() if isinstance(m, _BATCHNORM_TYPES) and m.track_running_stats
    ]
    try:
        for layer in layers:
            layer.track_running_stats = False
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True
