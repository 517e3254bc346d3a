"""The model zoo: the paper's networks, ResNet-18, WideResNet, a small ViT, MNIST-1D baselines.

Models are built by name with :func:`build_model` (or from a user's ``package.module:function``)
and listed by :func:`list_models`. They contain no randomness techniques: dropout, noise and the
like attach later through forward hooks on ``nn.Conv*``, ``nn.Linear`` and activation modules,
so every activation is its own module (``nn.ReLU``; ``nn.GELU`` in the ViT), called once per
forward pass. Weights keep PyTorch's default initialisation, drawn from the global RNG (the
trainer seeds and forks it).

BatchNorm presets: every BatchNorm layer takes ``(momentum, eps)`` from
:data:`BATCHNORM_PRESETS`. The default is ``"pytorch"`` (0.1, 1e-5), not the authors' Keras
defaults ``"keras"`` (Keras momentum 0.99, which is 0.01 in PyTorch's convention, and eps
1e-3). With momentum 0.01 the running statistics average over the last few hundred steps, so
on short runs they describe a long-gone network and evaluation collapses: on mnist5k after 3
epochs the paper's VGG reached 98 % training accuracy but 11–22 % test accuracy, and 97 % once
the statistics were recomputed on the training set. Use ``"keras"`` for faithful long runs,
best together with recomputing the statistics before evaluation (the trainer offers that;
see :func:`recalibrate_batchnorm`).
"""

from __future__ import annotations

from dicelab.models.base import BATCHNORM_PRESETS, MODELS, ModelInfo
from dicelab.models.batchnorm import frozen_bn_stats, recalibrate_batchnorm
from dicelab.models.build import build_model, list_models
from dicelab.models.fc import FullyConnected
from dicelab.models.mnist1d import MLP1D, ConvNet1D
from dicelab.models.resnet import BasicBlock, ResNet18
from dicelab.models.vgg import VGG
from dicelab.models.vit import ViT
from dicelab.models.wideresnet import WideBasicBlock, WideResNet

__all__ = [
    "BATCHNORM_PRESETS",
    "MODELS",
    "MLP1D",
    "VGG",
    "ViT",
    "BasicBlock",
    "ConvNet1D",
    "FullyConnected",
    "ModelInfo",
    "ResNet18",
    "WideBasicBlock",
    "WideResNet",
    "build_model",
    "list_models",
    "frozen_bn_stats",
    "recalibrate_batchnorm",
]
