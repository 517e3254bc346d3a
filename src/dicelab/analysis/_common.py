"""Plumbing shared by the analyses that evaluate a model on batches (Hessian, landscape)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from dicelab.exceptions import ConfigError

Batch = tuple[torch.Tensor, torch.Tensor]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run a block with every module in eval mode, then restore each module's own flag."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The named parameters with ``requires_grad``; ConfigError when there are none."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ConfigError(
            "model", type(model).__name__, "must have parameters with requires_grad=True"
        )
    return named


def checked_batches(batches: Iterable[Batch], device: torch.device) -> list[Batch]:
    """Read ``batches`` once: a non-empty list of ``(inputs, targets)`` on ``device``."""
    if isinstance(batches, torch.Tensor):
        raise ConfigError("batches", "a tensor", "must be an iterable of (inputs, targets) pairs")
    out: list[Batch] = []
    for i, item in enumerate(batches):
        pair = tuple(item) if isinstance(item, (tuple, list)) else None
        if pair is None or len(pair) != 2 or not all(isinstance(t, torch.Tensor) for t in pair):
            raise ConfigError(
                f"batches[{i}]",
                type(item).__name__,
                "must be an (inputs, targets) pair of tensors",
                hint="Pass a list of pairs; a single batch is [(inputs, targets)].",
            )
        inputs, targets = pair
        if inputs.dim() == 0 or len(inputs) == 0:
            raise ConfigError(f"batches[{i}]", tuple(inputs.shape), "must hold >= 1 example")
        out.append((inputs.to(device), targets.to(device)))
    if not out:
        raise ConfigError("batches", "empty", "must hold at least one (inputs, targets) pair")
    return out


def check_int(field: str, value: int, low: int) -> int:
    """``value`` if it is an int ``>= low`` (not a bool); else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(field, value, f"must be an integer >= {low}")
    return value
