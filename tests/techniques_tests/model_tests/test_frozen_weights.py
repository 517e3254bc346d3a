"""Frozen weights ("drnn"): a fixed random fraction p of every trainable tensor never moves."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams, isolated_global_rng
from dicelab.stages import Context
from dicelab.techniques import Injector
from dicelab.techniques.model.frozen_weights import FrozenWeights


def bound(p: float, seed: int = 0) -> FrozenWeights:
    technique = FrozenWeights(p=p)
    technique.bind(RandomStreams(seed))
    return technique


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def with_grads(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Fill ``.grad`` from the sum of ``model(x)``; a copy of the gradients, in model order."""
    model.zero_grad()
    model(x).sum().backward()
    return [p.grad.clone() for p in trainable(model) if p.grad is not None]


def test_frozen_fraction_on_a_big_tensor() -> None:
    p = 0.3
    with isolated_global_rng(0):
        layer = nn.Linear(1000, 1000)
    technique = bound(p)
    technique.setup(layer, Context())
    masks = technique.state_dict()["masks"]
    assert [m.shape for m in masks] == [layer.weight.shape, layer.bias.shape]
    assert all(m.dtype == torch.bool for m in masks)
    # 1e6 Bernoulli(p) draws: the fraction has std ≈ 4.6e-4; ±0.005 is ~10σ.
    assert abs((~masks[0]).float().mean().item() - p) < 0.005


def test_frozen_entries_never_move_under_sgd(user_mlp: nn.Module, vectors: torch.Tensor) -> None:
    initial = [p.detach().clone() for p in user_mlp.parameters()]
    injector = Injector.from_config({"frozen_weights": 0.5}, seed=0)
    injector.setup(user_mlp, num_classes=3)
    masks = injector.state_dict()["techniques"]["frozen_weights"]["masks"]
    optimizer = torch.optim.SGD(user_mlp.parameters(), lr=0.1, momentum=0.9)
    for _ in range(5):
        optimizer.zero_grad()
        user_mlp(vectors).square().mean().backward()
        injector.before_step(user_mlp.parameters())
        optimizer.step()
        injector.end_step()
    for start, param, keep in zip(initial, user_mlp.parameters(), masks, strict=True):
        assert torch.equal(param[~keep], start[~keep])
        # A tanh/ReLU MLP on Gaussian inputs: every entry but a dead unit's gets a gradient.
        moved = (param[keep] != start[keep]).float().mean().item()
        assert moved > 0.9


def test_every_trainable_tensor_is_masked_bn_included(vgg: nn.Module) -> None:
    vgg.features[0].conv1.weight.requires_grad_(False)
    technique = bound(0.5)
    technique.setup(vgg, Context())
    masks = technique.state_dict()["masks"]
    assert [m.shape for m in masks] == [p.shape for p in trainable(vgg)]


def test_p_one_freezes_everything(user_cnn: nn.Module, images: torch.Tensor) -> None:
    technique = bound(1.0)
    technique.setup(user_cnn, Context())
    with_grads(user_cnn, images[:, :, :8, :8])
    technique.on_grads(trainable(user_cnn), Context())
    assert all(bool((p.grad == 0).all()) for p in user_cnn.parameters())


def test_state_round_trip_restores_the_masks(user_mlp: nn.Module, vectors: torch.Tensor) -> None:
    first = bound(0.4)
    first.setup(user_mlp, Context())
    state = copy.deepcopy(first.state_dict())
    resumed = bound(0.4, seed=9)  # another seed: setup would draw other masks
    resumed.setup(user_mlp, Context())
    resumed.load_state_dict(state)
    masks = first.state_dict()["masks"]
    assert all(
        torch.equal(a, b) for a, b in zip(masks, resumed.state_dict()["masks"], strict=True)
    )
    with_grads(user_mlp, vectors)
    first.on_grads(trainable(user_mlp), Context())
    expected = [p.grad.clone() for p in user_mlp.parameters()]
    with_grads(user_mlp, vectors)
    resumed.on_grads(trainable(user_mlp), Context())
    assert all(
        torch.equal(p.grad, g) for p, g in zip(user_mlp.parameters(), expected, strict=True)
    )


def test_default_draws_nothing_and_leaves_gradients(
    user_mlp: nn.Module, vectors: torch.Tensor
) -> None:
    streams = RandomStreams(0)
    technique = FrozenWeights()
    technique.bind(streams)
    assert technique.is_noop
    technique.setup(user_mlp, Context())
    assert technique.state_dict() == {} and streams.state_dict() == {}
    grads = with_grads(user_mlp, vectors)
    technique.on_grads(trainable(user_mlp), Context())
    assert all(torch.equal(p.grad, g) for p, g in zip(user_mlp.parameters(), grads, strict=True))


def test_same_seed_same_masks_other_seed_other_masks(user_cnn: nn.Module) -> None:
    def masks(seed: int) -> list[torch.Tensor]:
        technique = bound(0.5, seed)
        technique.setup(user_cnn, Context())
        return technique.state_dict()["masks"]

    first = masks(0)
    assert all(torch.equal(a, b) for a, b in zip(first, masks(0), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, masks(1), strict=True))


def test_misuse_is_reported(user_mlp: nn.Module, vectors: torch.Tensor) -> None:
    technique = bound(0.5)
    with_grads(user_mlp, vectors)
    with pytest.raises(RuntimeError, match="before setup"):
        technique.on_grads(trainable(user_mlp), Context())
    technique.setup(user_mlp, Context())
    with pytest.raises(ValueError, match="trainable tensors"):
        technique.on_grads(trainable(user_mlp)[1:], Context())


@pytest.mark.parametrize("p", [-0.1, 1.5, "half"])
def test_bad_fraction_is_rejected(p: object) -> None:
    with pytest.raises(ConfigError, match="techniques.frozen_weights.p"):
        FrozenWeights(p=p)  # type: ignore[arg-type]
