"""Activation noise (NoisyReLU): relu(x + N(0, std²)) on every nn.ReLU, in training only."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques import Injector
from dicelab.techniques.model.activation_noise import ActivationNoise


def bound(std: float, seed: int = 0) -> ActivationNoise:
    technique = ActivationNoise(std=std)
    technique.bind(RandomStreams(seed))
    return technique


def hooked(
    technique: ActivationNoise, model: nn.Module, x: torch.Tensor, ctx: Context | None = None
) -> torch.Tensor:
    """``model(x)`` with the technique attached, then the hooks removed."""
    handles = technique.attach(model, ctx or Context())
    try:
        return model(x)
    finally:
        for handle in handles:
            handle.remove()


def test_hooks_every_relu_module_and_nothing_else(vgg: nn.Module, user_mlp: nn.Module) -> None:
    assert len(bound(0.1).attach(vgg, Context())) == 7  # 2 per block + the dense ReLU
    assert len(bound(0.1).attach(user_mlp, Context())) == 1  # the Tanh is not a ReLU


def test_noise_statistics_on_a_large_tensor(draws: str) -> None:
    std = 0.05
    relu = nn.ReLU()
    # Far above zero the ReLU is the identity: out − 10 is the noise itself.
    shifted = hooked(bound(std), relu, torch.full((1000, 1000), 10.0)) - 10.0
    # 1e6 draws: the sample mean has std 5e-5 and the sample std a relative std of 7e-4;
    # the tolerances below are ~6σ.
    assert abs(shifted.mean().item()) < 3e-4
    assert abs(shifted.std().item() / std - 1.0) < 0.005
    # At zero: relu(ε) is positive half of the time, with mean std / sqrt(2π).
    at_zero = hooked(bound(std, seed=1), relu, torch.zeros(1000, 1000))
    assert abs((at_zero > 0).float().mean().item() - 0.5) < 0.005
    assert abs(at_zero.mean().item() / (std / math.sqrt(2 * math.pi)) - 1.0) < 0.01


def test_inplace_relu_leaves_the_callers_tensor_alone(draws: str) -> None:
    x = torch.randn(100, generator=torch.Generator().manual_seed(2))
    before = x.clone()
    out = hooked(bound(0.1), nn.ReLU(inplace=True), x)
    assert torch.equal(x, before)
    assert bool((out >= 0).all())


def test_keeps_dtype(draws: str, user_cnn: nn.Module, images: torch.Tensor) -> None:
    model = user_cnn.to(torch.bfloat16)
    assert hooked(bound(0.1), model, images.to(torch.bfloat16)).dtype == torch.bfloat16


def test_default_attaches_nothing_and_draws_nothing(vgg: nn.Module) -> None:
    streams = RandomStreams(0)
    technique = ActivationNoise()
    technique.bind(streams)
    assert technique.is_noop
    assert technique.attach(vgg, Context()) == []
    assert streams.state_dict() == {}


def test_detach_restores_the_plain_model(vgg: nn.Module, images: torch.Tensor) -> None:
    plain = vgg(images)
    injector = Injector.from_config({"activation_noise": 0.1}, seed=0)
    injector.setup(vgg, num_classes=10)
    assert not torch.equal(vgg(images), plain)
    injector.detach()
    assert torch.equal(vgg(images), plain)


@pytest.mark.parametrize("std", [-0.01, "loud"])
def test_bad_std_is_rejected(std: object) -> None:
    with pytest.raises(ConfigError, match="techniques.activation_noise.std"):
        ActivationNoise(std=std)  # type: ignore[arg-type]
