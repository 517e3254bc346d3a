"""DropConnect: input masks (authors) and weight masks (Wan et al.) on hidden layers only."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams, isolated_global_rng
from dicelab.stages import Context
from dicelab.techniques import Injector
from dicelab.techniques._sites import hidden_weight_layers, output_layer
from dicelab.techniques.model.dropconnect import Dropconnect


def bound(p: float, mode: str = "input", seed: int = 0) -> Dropconnect:
    technique = Dropconnect(p=p, mode=mode)
    technique.bind(RandomStreams(seed))
    return technique


def hooked(
    technique: Dropconnect, model: nn.Module, x: torch.Tensor, ctx: Context | None = None
) -> torch.Tensor:
    """``model(x)`` with the technique attached, then the hooks removed."""
    handles = technique.attach(model, ctx or Context())
    try:
        return model(x)
    finally:
        for handle in handles:
            handle.remove()


def big_pair() -> nn.Sequential:
    """A hidden 1000→1000 linear layer followed by the output layer."""
    with isolated_global_rng(0):
        return nn.Sequential(nn.Linear(1000, 1000), nn.Linear(1000, 2))


# -- where ---------------------------------------------------------------------------------


def test_every_conv_and_linear_but_the_output_layer(vgg: nn.Module, user_cnn: nn.Module) -> None:
    assert output_layer(vgg) is vgg.classifier.fc2
    hidden = hidden_weight_layers(vgg)
    assert len(hidden) == 7 and vgg.classifier.fc1 in hidden
    assert [type(m) for m in hidden_weight_layers(user_cnn)] == [nn.Conv2d, nn.Conv2d, nn.Linear]
    convs = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Conv1d(2, 5, 1))  # no Linear
    assert output_layer(convs) is convs[2]
    assert hidden_weight_layers(convs) == [convs[0]]


def test_output_layer_is_untouched() -> None:
    model = big_pair()
    x = torch.rand(64, 1000, generator=torch.Generator().manual_seed(1))
    handles = bound(0.5).attach(model, Context())
    out = model[1](x)
    for handle in handles:
        handle.remove()
    assert torch.equal(out, model[1](x))


# -- what --------------------------------------------------------------------------------


def test_input_mask_fraction_and_no_rescaling(draws: str) -> None:
    p = 0.3
    model = big_pair()
    seen: list[torch.Tensor] = []

    def capture(module: nn.Module, args: tuple[Any, ...]) -> None:
        seen.append(args[0])

    handles = bound(p).attach(model, Context())
    handles.append(model[0].register_forward_pre_hook(capture))  # runs after the mask
    model(torch.ones(1000, 1000))
    for handle in handles:
        handle.remove()
    masked = seen[0]
    # 1e6 Bernoulli(p) draws: the fraction has std ≈ 4.6e-4; ±0.005 is ~10σ.
    assert abs((masked == 0).float().mean().item() - p) < 0.005
    assert torch.equal(masked[masked != 0], torch.ones_like(masked[masked != 0]))


def test_weight_mask_fraction_no_rescaling_and_stored_weight_kept() -> None:
    p = 0.3
    model = big_pair()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.zero_()
    before = model[0].weight.detach().clone()
    handles = bound(p, mode="weight").attach(model, Context())
    out = model[0](torch.eye(1000))  # eye @ (W ⊙ M)ᵀ = (W ⊙ M)ᵀ = Mᵀ
    for handle in handles:
        handle.remove()
    assert torch.equal(model[0].weight, before)
    # 1e6 weight entries: same ±0.005 (~10σ) tolerance as for the input mask.
    assert abs((out == 0).float().mean().item() - p) < 0.005
    assert torch.equal(out[out != 0], torch.ones_like(out[out != 0]))


def test_weight_mode_on_a_convolution_masks_the_weight_gradient() -> None:
    with isolated_global_rng(0):
        model = nn.Sequential(nn.Conv2d(64, 64, 3), nn.Flatten(), nn.Linear(64 * 16, 2))
    conv = model[0]
    before = conv.weight.detach().clone()
    x = torch.rand(2, 64, 6, 6, generator=torch.Generator().manual_seed(3))
    out = hooked(bound(0.5, mode="weight"), model, x)
    out.sum().backward()
    assert torch.equal(conv.weight, before)
    grad = conv.weight.grad
    assert grad is not None
    # 36 864 weights: the masked fraction has std ≈ 2.6e-3; ±0.015 is ~6σ.
    assert abs((grad == 0).float().mean().item() - 0.5) < 0.015
    assert bool((conv.bias.grad != 0).all())  # the bias is never masked


# -- identities and randomness ---------------------------------------------------------------


def test_default_is_off_whatever_the_mode(vgg: nn.Module) -> None:
    streams = RandomStreams(0)
    technique = Dropconnect(mode="weight")
    technique.bind(streams)
    assert technique.is_noop
    assert technique.attach(vgg, Context()) == []
    assert streams.state_dict() == {}


@pytest.mark.parametrize("mode", ["input", "weight"])
def test_detach_restores_the_plain_model(mode: str, vgg: nn.Module, images: torch.Tensor) -> None:
    plain = vgg(images)
    injector = Injector.from_config({"dropconnect": {"p": 0.5, "mode": mode}}, seed=0)
    injector.setup(vgg, num_classes=10)
    assert not torch.equal(vgg(images), plain)
    injector.detach()
    assert torch.equal(vgg(images), plain)


@pytest.mark.parametrize("mode", ["input", "weight"])
def test_a_fresh_mask_at_every_forward(
    mode: str, user_mlp: nn.Module, vectors: torch.Tensor
) -> None:
    handles = bound(0.4, mode).attach(user_mlp, Context())
    first, second = user_mlp(vectors), user_mlp(vectors)
    for handle in handles:
        handle.remove()
    assert not torch.equal(first, second)


@pytest.mark.parametrize(("field", "value"), [("p", -0.1), ("p", 1.0), ("mode", "bias")])
def test_bad_hyperparameters_are_rejected(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"techniques.dropconnect.{field}"):
        Dropconnect(**{field: value})
