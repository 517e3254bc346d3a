"""Gradient noise: the annealed scale, the added noise's distribution, order after the masks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques import Injector
from dicelab.techniques._anneal import annealed_std
from dicelab.techniques.optimization.gradient_dropout import GradientDropout
from dicelab.techniques.optimization.gradient_noise import GradientNoise

# sqrt(0.3 / (1 + t)^0.55) for t = 0..5, computed with 40-digit decimal arithmetic.
SIGMA_ETA_03 = [
    0.5477225575051661134569697828008021339527,
    0.4526654819103830539255181083917908093640,
    0.4049042006152656540791605029458990616122,
    0.3741055315422656409524582310504665856961,
    0.3518389177746652990458300704276601599034,
    0.3346332054204630650879252999118452764954,
]
N = 1_000_000


def bound(technique: GradientNoise, seed: int = 0) -> GradientNoise:
    technique.bind(RandomStreams(seed))
    return technique


def param_with_grad(grad: torch.Tensor) -> nn.Parameter:
    param = nn.Parameter(torch.zeros_like(grad))
    param.grad = grad
    return param


def stream_state(technique: GradientNoise) -> torch.Tensor:
    return technique.rng("cpu").get_state()


def test_scale_helper_matches_the_formula() -> None:
    # Double precision: within a few ulps (rel 1e-15) of the exact value.
    for step, expected in enumerate(SIGMA_ETA_03):
        assert annealed_std(0.3, 0.55, step) == pytest.approx(expected, rel=1e-15, abs=0.0)
    assert annealed_std(0.0, 0.55, 7) == 0.0
    assert annealed_std(1.0, 0.0, 100) == 1.0


def test_added_noise_is_the_scaled_stream_exactly() -> None:
    technique = bound(GradientNoise(eta=0.3))
    reference = RandomStreams(0).generator("technique/gradient_noise")
    param = param_with_grad(torch.zeros(1000))
    for step in range(6):
        param.grad.zero_()
        technique.on_grads([param], Context(step=step))
        expected = torch.randn(1000, generator=reference) * annealed_std(0.3, 0.55, step)
        assert torch.equal(param.grad, expected)


@pytest.mark.parametrize("step", range(6))
def test_added_noise_std_follows_the_schedule(step: int) -> None:
    param = param_with_grad(torch.zeros(N))
    bound(GradientNoise(eta=0.3)).on_grads([param], Context(step=step))
    sigma = SIGMA_ETA_03[step]
    # Sample std of 1e6 normals has relative standard error 1/sqrt(2N) ≈ 7.1e-4: ±0.5 % is ~7
    # standard errors. The sample mean has standard error sigma/1000: ±5 sigma/1000 is 5.
    assert param.grad.std().item() == pytest.approx(sigma, rel=0.005)
    assert abs(param.grad.mean().item()) < 5 * sigma / 1000


def exact_zero_fraction(grad: torch.Tensor) -> float:
    return (grad == 0).float().mean().item()


def test_masked_zero_gradients_still_receive_noise() -> None:
    param = param_with_grad(torch.zeros(N))
    bound(GradientNoise(eta=0.3)).on_grads([param], Context())
    # torch's normal sampler itself returns an exact 0.0 about once per million draws.
    assert exact_zero_fraction(param.grad) < 1e-5


def test_runs_after_gradient_dropout_in_the_injector() -> None:
    grad = torch.ones(10_000)
    injector = Injector([GradientNoise(eta=0.3), GradientDropout(p=0.5)], seed=5)
    model_param = param_with_grad(grad.clone())
    injector.before_step([model_param])
    # The same draws by hand, in the authors' order: mask first, then noise on every entry.
    streams = RandomStreams(5)
    dropout, noise = GradientDropout(p=0.5), GradientNoise(eta=0.3)
    dropout.bind(streams)
    noise.bind(streams)
    by_hand = param_with_grad(grad.clone())
    dropout.on_grads([by_hand], Context())
    noise.on_grads([by_hand], Context())
    assert torch.equal(model_param.grad, by_hand.grad)
    # Masked entries got noise too: half the entries were zeroed, (almost) none stay zero.
    assert exact_zero_fraction(model_param.grad) < 1e-3


def test_every_trainable_tensor_with_a_grad_and_none_without() -> None:
    with_grad = [param_with_grad(torch.zeros(3, 4)), param_with_grad(torch.zeros(5))]
    without = nn.Parameter(torch.zeros(2))
    bound(GradientNoise(eta=0.3)).on_grads([*with_grad, without], Context())
    assert all(bool((p.grad != 0).all()) for p in with_grad)
    assert without.grad is None


def test_same_seed_same_noise_other_seed_other_noise() -> None:
    def noisy(seed: int) -> torch.Tensor:
        param = param_with_grad(torch.zeros(1000))
        bound(GradientNoise(eta=0.3), seed).on_grads([param], Context(step=3))
        return param.grad

    assert torch.equal(noisy(0), noisy(0))
    assert not torch.equal(noisy(0), noisy(1))


def test_keeps_dtype() -> None:
    grad = torch.zeros(100, dtype=torch.bfloat16)
    param = nn.Parameter(torch.zeros(100, dtype=torch.bfloat16))
    param.grad = grad
    bound(GradientNoise(eta=0.3)).on_grads([param], Context())
    assert param.grad is grad and grad.dtype == torch.bfloat16
    assert bool((grad != 0).any())


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"eta": -0.1}, "eta"),
        ({"eta": "lots"}, "eta"),
        ({"eta": 0.3, "gamma": -0.5}, "gamma"),
    ],
)
def test_bad_hyperparameters_are_rejected(params: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=f"techniques.gradient_noise.{field}"):
        GradientNoise(**params)  # type: ignore[arg-type]
