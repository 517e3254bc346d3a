"""Weight initialisation: Conv/Linear kernels from N(0, std²), biases zero, BN untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams, isolated_global_rng
from dicelab.stages import Context
from dicelab.techniques.model.weight_init import WeightInit


def bound(std: float, seed: int = 0) -> WeightInit:
    technique = WeightInit(std=std)
    technique.bind(RandomStreams(seed))
    return technique


def snapshot(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def test_kernel_std_and_zero_bias_on_a_big_linear() -> None:
    std = 0.05
    with isolated_global_rng(0):
        layer = nn.Linear(1000, 1000)
    bound(std).setup(layer, Context())
    weight = layer.weight.detach()
    # 1e6 draws: the sample mean has std 5e-5 and the sample std a relative std of 7e-4;
    # the tolerances are ~6σ.
    assert abs(weight.mean().item()) < 3e-4
    assert abs(weight.std().item() / std - 1.0) < 0.005
    assert torch.equal(layer.bias, torch.zeros_like(layer.bias))


def test_every_conv_and_linear_including_the_output_layer_and_no_bn(vgg: nn.Module) -> None:
    bns = {n: t.clone() for n, t in vgg.state_dict().items() if ".bn" in n}
    bound(0.02).setup(vgg, Context())
    weights = [m for m in vgg.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weights) == 8
    for layer in weights:
        # ≥ 288 entries per kernel: the sample std has a relative std ≤ 1/sqrt(2·288) ≈ 4.2 %;
        # ±25 % is ~6σ.
        assert abs(layer.weight.std().item() / 0.02 - 1.0) < 0.25
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    for name, value in vgg.state_dict().items():
        if ".bn" in name:
            assert torch.equal(value, bns[name])


def test_works_on_a_users_model_with_1d_and_3d_convolutions() -> None:
    with isolated_global_rng(0):
        model = nn.ModuleDict(
            {
                "a": nn.Conv1d(2, 40, 5),
                "b": nn.Conv3d(2, 40, 3, bias=False),
                "c": nn.Linear(90, 20),
            }
        )
    bound(0.1).setup(model, Context())
    for layer in model.values():
        # ≥ 400 entries: relative std of the sample std ≤ 3.5 %; ±20 % is ~6σ.
        assert abs(layer.weight.std().item() / 0.1 - 1.0) < 0.2
    assert torch.equal(model["a"].bias, torch.zeros(40))


def test_default_keeps_the_models_initialisation_and_draws_nothing(vgg: nn.Module) -> None:
    before = snapshot(vgg)
    streams = RandomStreams(0)
    technique = WeightInit()
    technique.bind(streams)
    assert technique.is_noop
    technique.setup(vgg, Context())
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot(vgg), strict=True))
    assert streams.state_dict() == {}


def test_same_seed_same_weights_other_seed_other_weights(user_cnn: nn.Module) -> None:
    bound(0.05, seed=0).setup(user_cnn, Context())
    first = snapshot(user_cnn)
    bound(0.05, seed=0).setup(user_cnn, Context())
    assert all(torch.equal(a, b) for a, b in zip(first, snapshot(user_cnn), strict=True))
    bound(0.05, seed=1).setup(user_cnn, Context())
    assert not torch.equal(first[0], snapshot(user_cnn)[0])


@pytest.mark.parametrize("std", [-0.05, "wide"])
def test_bad_std_is_rejected(std: object) -> None:
    with pytest.raises(ConfigError, match="techniques.weight_init.std"):
        WeightInit(std=std)  # type: ignore[arg-type]
