"""Loss noise: per-example N(1, std²) factors on the loss, and the gradients they weight."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Category, Context
from dicelab.techniques import Injector
from dicelab.techniques.learning.loss_noise import LossNoise

N = 1_000_000


def bound(technique: LossNoise, seed: int = 0) -> LossNoise:
    technique.bind(RandomStreams(seed))
    return technique


@pytest.mark.parametrize("std", [0.1, 0.5, 1.0])
def test_factors_have_mean_one_and_std_std(std: float) -> None:
    factors = bound(LossNoise(std=std)).on_loss(torch.ones(N), Context())
    # Over 1e6 draws the mean has standard error std/1000 and the sample std a relative
    # standard error 1/sqrt(2N) ≈ 7.1e-4: the bounds below are 5 and ~7 standard errors.
    assert abs(factors.mean().item() - 1.0) < 5 * std / 1000
    assert factors.std().item() == pytest.approx(std, rel=0.005)


def test_std_one_makes_about_a_sixth_of_the_factors_negative() -> None:
    factors = bound(LossNoise(std=1.0)).on_loss(torch.ones(N), Context())
    # P(N(1, 1) < 0) = Phi(-1) = 0.158655; the fraction's standard error is 3.7e-4, ±0.002 is
    # over 5 of them.
    assert (factors < 0).float().mean().item() == pytest.approx(0.158655, abs=0.002)


def test_one_factor_per_example_redrawn_every_step() -> None:
    technique = bound(LossNoise(std=0.5))
    loss = torch.full((8,), 2.0)
    first = technique.on_loss(loss, Context(step=0))
    second = technique.on_loss(loss, Context(step=1))
    assert first.shape == (8,)
    assert len(set(first.tolist())) == 8  # a different factor for every example
    assert not torch.equal(first, second)
    # The factors are the technique's stream, one standard normal per example.
    reference = RandomStreams(0).generator("technique/loss_noise")
    expected = loss * (torch.randn(8, generator=reference) * 0.5 + 1.0)
    assert torch.allclose(first, expected, rtol=1e-6, atol=0.0)


def test_gradients_are_the_per_example_gradients_weighted_by_the_factors() -> None:
    gen = torch.Generator().manual_seed(3)
    model = nn.Linear(5, 3)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen))
    x = torch.randn(6, 5, generator=gen)
    y = torch.randint(0, 3, (6,), generator=gen)

    per_example = F.cross_entropy(model(x), y, reduction="none")
    bound(LossNoise(std=0.8)).on_loss(per_example, Context()).sum().backward()
    reference = RandomStreams(0).generator("technique/loss_noise")
    factors = torch.randn(6, generator=reference) * 0.8 + 1.0
    got = [p.grad.clone() for p in model.parameters()]

    expected = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(6):  # a reference loop over examples: sum_i eps_i * grad L_i
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for acc, param in zip(expected, model.parameters(), strict=True):
            acc += factors[i] * param.grad
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def test_injector_applies_it_in_training_only() -> None:
    injector = Injector([LossNoise(std=0.5)], seed=0)
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 2, 0])
    clean = F.cross_entropy(logits, targets, reduction="none")
    assert not torch.equal(injector.loss(logits, targets), clean)
    with injector.paused():
        assert torch.equal(injector.loss(logits, targets), clean)


def test_identity_in_evaluation() -> None:
    technique = bound(LossNoise(std=0.5))
    loss = torch.rand(16)
    state = technique.rng("cpu").get_state()
    assert technique.on_loss(loss, Context(training=False)) is loss
    assert torch.equal(technique.rng("cpu").get_state(), state)


def test_same_seed_same_factors_other_seed_other_factors() -> None:
    def noisy(seed: int) -> torch.Tensor:
        return bound(LossNoise(std=0.5), seed).on_loss(torch.ones(1000), Context())

    assert torch.equal(noisy(0), noisy(0))
    assert not torch.equal(noisy(0), noisy(1))


def test_keeps_dtype() -> None:
    loss = torch.ones(100, dtype=torch.bfloat16)
    noisy = bound(LossNoise(std=0.5)).on_loss(loss, Context())
    assert noisy.dtype == torch.bfloat16 and noisy.shape == loss.shape


def test_declared_as_learning_with_unverified_category() -> None:
    assert LossNoise.category is Category.LEARNING
    assert not LossNoise.category_verified


@pytest.mark.parametrize("std", [-0.1, "noisy", None])
def test_bad_std_is_rejected(std: object) -> None:
    with pytest.raises(ConfigError, match="techniques.loss_noise.std"):
        LossNoise(std=std)  # type: ignore[arg-type]
