"""Models the MODEL-technique tests attach to: dicelab's paper networks and users' own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from dicelab.models import build_model
from dicelab.rng import isolated_global_rng
from dicelab.techniques import _fused as fused


@pytest.fixture
def vgg() -> nn.Module:
    """The paper's VGG (3 blocks) for 28×28 grey images, in training mode."""
    with isolated_global_rng(0):
        return build_model("vgg", input_shape=(1, 28, 28), num_classes=10)


@pytest.fixture
def fc() -> nn.Module:
    """The paper's fully connected net (2 hidden layers) for 28×28 inputs."""
    with isolated_global_rng(0):
        return build_model("fc", input_shape=(1, 28, 28), num_classes=10)


@pytest.fixture
def user_cnn() -> nn.Sequential:
    """A user's own small CNN written as a plain ``nn.Sequential`` (indices as names)."""
    with isolated_global_rng(0):
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),  # 0
            nn.ReLU(),  # 1
            nn.MaxPool2d(2),  # 2: dropout site
            nn.Conv2d(4, 8, 3, padding=1),  # 3
            nn.ReLU(),  # 4
            nn.AdaptiveAvgPool2d(1),  # 5: dropout site
            nn.Flatten(),  # 6
            nn.Linear(8, 16),  # 7
            nn.ReLU(),  # 8: dropout site (followed by the output layer)
            nn.Linear(16, 3),  # 9: output layer
        )


@pytest.fixture
def user_mlp() -> nn.Sequential:
    """A user's own small MLP with a tanh and a ReLU hidden layer."""
    with isolated_global_rng(0):
        return nn.Sequential(
            nn.Flatten(),  # 0
            nn.Linear(20, 32),  # 1
            nn.Tanh(),  # 2: dropout site
            nn.Linear(32, 32),  # 3
            nn.ReLU(),  # 4: dropout site
            nn.Linear(32, 3),  # 5: output layer
        )


@pytest.fixture
def images() -> torch.Tensor:
    """A fixed batch of 28×28 grey images ``(8, 1, 28, 28)`` in [0, 1]."""
    return torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(7))


@pytest.fixture
def vectors() -> torch.Tensor:
    """A fixed batch of inputs ``(16, 20)`` for :func:`user_mlp`."""
    return torch.randn(16, 20, generator=torch.Generator().manual_seed(8))


@pytest.fixture(params=["fused", "torch"])
def draws(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both routes of activation noise and DropConnect: dicelab's fused kernels, and torch's
    generator (the fallback where no C compiler is available)."""
    if request.param == "torch":
        monkeypatch.setenv("DICELAB_FUSED_DRAWS", "0")
    fused.library.cache_clear()
    if request.param == "fused" and not fused.in_use():
        pytest.skip("no C compiler here: the fused kernels cannot be built")
    yield request.param
    fused.library.cache_clear()
