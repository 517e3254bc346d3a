"""Where MODEL-stage techniques attach: weight layers, the output layer and dropout sites.

The rules look only at module types and at the registration order of ``nn.Module`` children
(the order of ``model.named_modules()``), so they work on any user model, not only dicelab's.
Functional calls in a user's ``forward`` (``F.relu``, ``F.max_pool2d``, ``x @ w``) are not
modules and cannot be found.

* Weight layers: every ``nn.Conv1d``/``nn.Conv2d``/``nn.Conv3d`` and ``nn.Linear`` (including
  subclasses such as ``nn.LazyLinear`` once materialised).
* Output layer: the last ``nn.Linear`` in registration order; a model without one uses its
  last convolution (a fully convolutional classifier).
* Dropout sites: the output of every pooling module (max, average, adaptive; pools built with
  ``return_indices=True`` are skipped, their output feeds an unpooling layer), and the output
  of every activation module whose *follower* is a weight layer. The follower of a module is
  its next sibling in its parent's registration order, skipping shape-only modules
  (``nn.Flatten``, ``nn.Unflatten``, ``nn.Identity``); the last child of a container takes the
  container's own follower. On the paper's VGG this yields each block's max-pool and the dense
  ReLU; on the paper's FC net every hidden ReLU (the last one is the last child of
  ``hidden``, followed by ``output``); in a post-activation ResNet block
  ``conv1 → bn1 → relu1 → conv2`` the ReLU between the convolutions (WideResNet's dropout
  position).
"""

from __future__ import annotations

from typing import TypeAlias

from torch import nn

#: Layers with a weight kernel: DropConnect and the kernel initialiser act on these.
WeightLayer: TypeAlias = "nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear"
WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

POOLS: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)

#: Element-wise activation modules of ``torch.nn`` (softmax-like normalisers are left out).
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Softsign,
    nn.LogSigmoid,
    nn.Tanhshrink,
    nn.Threshold,
)

#: Modules that only reshape (or pass on) a tensor; the follower rule looks through them.
_SHAPE_ONLY: tuple[type[nn.Module], ...] = (nn.Flatten, nn.Unflatten, nn.Identity)


def weight_layers(model: nn.Module) -> list[WeightLayer]:
    """Every convolution and linear layer of ``model``, in registration order."""
    return [m for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]


def output_layer(model: nn.Module) -> WeightLayer | None:
    """The last ``nn.Linear`` of ``model``, else its last convolution, else ``None``."""
    layers = weight_layers(model)
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    candidates = linears or layers
    return candidates[-1] if candidates else None


def hidden_weight_layers(model: nn.Module) -> list[WeightLayer]:
    """The weight layers of ``model`` other than its output layer."""
    out = output_layer(model)
    return [m for m in weight_layers(model) if m is not out]


def dropout_sites(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every module whose output dropout masks (see module docs)."""
    followed: set[int] = set()  # ids of activations whose follower is a weight layer
    _mark_followed(model, None, followed)
    sites = []
    for name, module in model.named_modules():
        if isinstance(module, POOLS):
            if not getattr(module, "return_indices", False):
                sites.append((name, module))
        elif isinstance(module, ACTIVATIONS) and id(module) in followed:
            sites.append((name, module))
    return sites


def _mark_followed(parent: nn.Module, follower: nn.Module | None, followed: set[int]) -> None:
    """Add to ``followed`` the children (at any depth) whose follower is a weight layer;
    ``follower`` is the module that follows ``parent`` itself."""
    after = follower
    for child in reversed(list(parent.children())):
        if isinstance(after, WEIGHT_LAYERS):
            followed.add(id(child))
        _mark_followed(child, after, followed)
        if not isinstance(child, _SHAPE_ONLY):
            after = child
