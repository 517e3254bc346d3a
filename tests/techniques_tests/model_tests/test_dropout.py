"""Dropout: where it attaches (any model), the drop fraction, inverted scaling, identities."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.models import build_model
from dicelab.rng import RandomStreams, isolated_global_rng
from dicelab.stages import Context
from dicelab.techniques import Injector
from dicelab.techniques._sites import dropout_sites
from dicelab.techniques.model.dropout import Dropout


def site_names(model: nn.Module) -> list[str]:
    return [name for name, _ in dropout_sites(model)]


def hooked(
    technique: Dropout,
    model: nn.Module,
    x: torch.Tensor,
    ctx: Context | None = None,
    *,
    call: nn.Module | None = None,
) -> torch.Tensor:
    """``call(x)`` (default ``model(x)``) with the technique attached to ``model``, then the
    hooks removed."""
    handles = technique.attach(model, ctx or Context())
    try:
        return (call or model)(x)
    finally:
        for handle in handles:
            handle.remove()


def bound(p: float, seed: int = 0) -> Dropout:
    technique = Dropout(p=p)
    technique.bind(RandomStreams(seed))
    return technique


# -- where ---------------------------------------------------------------------------------


def test_sites_on_the_paper_vgg_are_the_three_pools_and_the_dense_relu(vgg: nn.Module) -> None:
    assert site_names(vgg) == [
        "features.0.pool",
        "features.1.pool",
        "features.2.pool",
        "classifier.relu",
    ]


def test_sites_on_the_paper_fc_net_are_every_hidden_relu(fc: nn.Module) -> None:
    # relu2 is the last child of `hidden`; its follower is the model's `output` layer.
    assert site_names(fc) == ["hidden.relu1", "hidden.relu2"]


def test_sites_on_a_users_sequential(user_cnn: nn.Module, user_mlp: nn.Module) -> None:
    assert site_names(user_cnn) == ["2", "5", "8"]
    assert site_names(user_mlp) == ["2", "4"]
    # A ReLU followed by a Flatten and then a Linear layer is a site too.
    assert site_names(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)))
    # A ReLU followed by BatchNorm is not; pools returning indices are skipped.
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4))
    assert site_names(net) == []
    assert site_names(nn.Sequential(nn.MaxPool2d(2, return_indices=True))) == []


def test_sites_on_resnet18_are_between_the_convolutions_of_each_block() -> None:
    with isolated_global_rng(0):
        model = build_model(
            "resnet18", input_shape=(3, 8, 8), num_classes=10, options={"width": 4}
        )
    blocks = [f"layer{i}.{j}.relu1" for i in range(1, 5) for j in range(2)]
    assert site_names(model) == [*blocks, "pool"]


# -- what --------------------------------------------------------------------------------


def test_drop_fraction_and_exact_inverted_scaling() -> None:
    p = 0.3
    model = nn.Sequential(nn.Tanh(), nn.Linear(1000, 1))
    x = torch.rand(1000, 1000, generator=torch.Generator().manual_seed(1)) + 0.5  # tanh > 0
    out = hooked(bound(p), model, x, call=model[0])
    plain = torch.tanh(x)
    dropped = out == 0
    # 1e6 Bernoulli(p) draws: the fraction has std sqrt(p(1-p)/1e6) ≈ 4.6e-4; ±0.005 is ~10σ.
    assert abs(dropped.float().mean().item() - p) < 0.005
    assert torch.equal(out[~dropped], plain[~dropped] * (1.0 / (1.0 - p)))


def test_gradient_flows_through_kept_entries_only() -> None:
    x = (torch.rand(50, 40, generator=torch.Generator().manual_seed(2)) + 0.1).requires_grad_()
    model = nn.Sequential(nn.ReLU(), nn.Linear(40, 1))
    out = hooked(bound(0.5), model, x, call=model[0])
    out.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad == 0, out == 0)
    assert torch.allclose(x.grad[out != 0], torch.full_like(x.grad[out != 0], 2.0))  # 1 / (1 − p)


def test_output_keeps_dtype_and_device(user_mlp: nn.Module, vectors: torch.Tensor) -> None:
    model = user_mlp.to(torch.bfloat16)
    out = hooked(bound(0.5), model, vectors.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16


# -- identities and randomness ---------------------------------------------------------------


def test_default_attaches_nothing_and_draws_nothing(vgg: nn.Module, images: torch.Tensor) -> None:
    streams = RandomStreams(0)
    technique = Dropout()
    technique.bind(streams)
    assert technique.is_noop
    assert technique.attach(vgg, Context()) == []
    assert streams.state_dict() == {}
    assert torch.equal(vgg(images), vgg(images))


def test_detach_restores_the_plain_model(vgg: nn.Module, images: torch.Tensor) -> None:
    plain = vgg(images)
    injector = Injector.from_config({"dropout": 0.5}, seed=0)
    injector.setup(vgg, num_classes=10)
    assert not torch.equal(vgg(images), plain)
    injector.detach()
    assert torch.equal(vgg(images), plain)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_bad_probability_is_rejected(p: float) -> None:
    with pytest.raises(ConfigError, match="techniques.dropout.p"):
        Dropout(p=p)
