"""Weight noise: annealed additive N(0, σ_t²) on the weights; gradients left alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.space import hparams
from dicelab.stages import Context
from dicelab.techniques import Injector
from dicelab.techniques._anneal import annealed_std
from dicelab.techniques.optimization.weight_noise import WeightNoise

N = 1_000_000
ETA = 1e-2


def bound(technique: WeightNoise, seed: int = 0) -> WeightNoise:
    technique.bind(RandomStreams(seed))
    return technique


def random_param(size: int, seed: int = 7) -> nn.Parameter:
    gen = torch.Generator().manual_seed(seed)
    param = nn.Parameter(torch.randn(size, generator=gen))
    param.grad = torch.randn(size, generator=gen)
    return param


@pytest.mark.parametrize("step", [0, 1, 2, 5, 100])
def test_weights_move_by_annealed_normal_noise(step: int) -> None:
    param = random_param(N)
    before = param.detach().clone()
    bound(WeightNoise(eta=ETA)).on_weights([param], Context(step=step))
    change = param.detach() - before
    sigma = annealed_std(ETA, 0.55, step)
    # Sample std of 1e6 normals: relative standard error 1/sqrt(2N) ≈ 7.1e-4, so ±0.5 % is ~7
    # standard errors (the float32 rounding of w + n - w is far below that). The mean's
    # standard error is sigma/1000; ±5 sigma/1000 is 5 of them.
    assert change.std().item() == pytest.approx(sigma, rel=0.005)
    assert abs(change.mean().item()) < 5 * sigma / 1000


def test_added_noise_is_the_scaled_stream_exactly() -> None:
    technique = bound(WeightNoise(eta=ETA))
    reference = RandomStreams(0).generator("technique/weight_noise")
    param = nn.Parameter(torch.zeros(1000))
    for step in range(6):
        with torch.no_grad():
            param.zero_()
        technique.on_weights([param], Context(step=step))
        expected = torch.randn(1000, generator=reference) * annealed_std(ETA, 0.55, step)
        assert torch.equal(param.detach(), expected)


def test_gradients_are_left_alone() -> None:
    param = random_param(1000)
    grad = param.grad
    grad_before = grad.clone()
    bound(WeightNoise(eta=ETA)).on_weights([param], Context())
    assert param.grad is grad
    assert torch.equal(grad, grad_before)


def test_every_trainable_tensor_is_perturbed_and_not_under_autograd() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    before = [p.detach().clone() for p in model.parameters()]
    bound(WeightNoise(eta=ETA)).on_weights(list(model.parameters()), Context())
    for param, old in zip(model.parameters(), before, strict=True):
        assert bool((param != old).all())
        assert param.is_leaf and param.requires_grad


def test_noise_is_applied_in_before_step_and_kept() -> None:
    param = random_param(1000)
    before = param.detach().clone()
    injector = Injector([WeightNoise(eta=ETA)], seed=0)
    injector.before_step([param])
    injector.end_step()
    moved = param.detach().clone()
    assert not torch.equal(moved, before)
    injector.before_step([param])  # the next step adds more noise on top, removes nothing
    reference = RandomStreams(0).generator("technique/weight_noise")
    first = torch.randn(1000, generator=reference) * annealed_std(ETA, 0.55, 0)
    second = torch.randn(1000, generator=reference) * annealed_std(ETA, 0.55, 1)
    assert torch.allclose(param.detach(), before + first + second, atol=1e-6)


def test_search_range_is_log_scale_matching_the_paper_gene() -> None:
    spec = hparams(WeightNoise)["eta"]
    # The paper's gene x in [1, 6] decodes to eta = 10^(-x).
    assert spec.search == (1e-6, 1e-1) and spec.log
    assert spec.default == 0.0 and hparams(WeightNoise)["gamma"].search is None


def test_same_seed_same_noise_other_seed_other_noise() -> None:
    def noisy(seed: int) -> torch.Tensor:
        param = random_param(1000)
        bound(WeightNoise(eta=ETA), seed).on_weights([param], Context(step=2))
        return param.detach()

    assert torch.equal(noisy(0), noisy(0))
    assert not torch.equal(noisy(0), noisy(1))


def test_keeps_dtype() -> None:
    param = nn.Parameter(torch.zeros(100, dtype=torch.bfloat16))
    bound(WeightNoise(eta=ETA)).on_weights([param], Context())
    assert param.dtype == torch.bfloat16
    assert bool((param != 0).any())


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"eta": -1e-3}, "eta"),
        ({"eta": None}, "eta"),
        ({"eta": ETA, "gamma": -0.1}, "gamma"),
    ],
)
def test_bad_hyperparameters_are_rejected(params: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=f"techniques.weight_noise.{field}"):
        WeightNoise(**params)  # type: ignore[arg-type]
