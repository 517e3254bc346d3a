"""ARWP and m-ARWP refuse a summed loss: their adaptive noise is tuned for the batch mean, and a
sum inflates the squared-gradient history by about B², which switches the adaptation off."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dicelab.exceptions import ConfigError
from dicelab.optim import ARWP
from dicelab.optim.factory import ADAPTIVE, PERTURBATIONS, check_reduction

from .test_perturbation import toy_model


@pytest.mark.parametrize("perturbation", ["arwp", "marwp"])
def test_adaptive_perturbations_refuse_a_summed_loss(perturbation: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_reduction(perturbation, "sum")
    err = caught.value
    assert (err.field, err.value) == ("train.reduction", "sum")
    assert f"must be mean with optimizer.perturbation={perturbation}" in str(err)


@pytest.mark.parametrize("perturbation", ["none", *PERTURBATIONS])
def test_the_mean_always_passes_and_the_sum_passes_without_adaptation(
    perturbation: str,
) -> None:
    check_reduction(perturbation, "mean")
    if perturbation not in ADAPTIVE:
        check_reduction(perturbation, "sum")


def last_noise(eta: float, reduction: str, updates: int = 20) -> torch.Tensor:
    """The noise ARWP adds to the first layer after ``updates`` updates (at lr 0, so the
    weights stay put) on batches of 128 with the loss reduced by ``reduction``."""
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(128, 1, 6, 6, generator=gen), torch.randint(0, 3, (128,), generator=gen)
    model = toy_model()
    opt = ARWP(model.parameters(), torch.optim.SGD, eta=eta, lr=0.0, seed=0)
    for _ in range(updates):
        opt.zero_grad()
        opt.perturb()
        F.cross_entropy(model(x), y, reduction=reduction).backward()
        opt.step()
    weight = model[0].weight
    before = weight.detach().clone()
    opt.perturb()
    return weight.detach() - before


def test_a_summed_loss_all_but_switches_the_adaptive_noise_off() -> None:
    """The reason for the guard, measured: with the mean loss ARWP's noise is RWP's (the same
    draws) all but unshrunk; with the sum the squared-gradient history grows by B² = 16,384
    and the noise shrinks markedly (on this small network by about 40 %; on a CIFAR network,
    whose filters sum hundreds of squared gradients, many times more)."""
    plain = last_noise(0.0, "mean").norm()
    mean = last_noise(0.1, "mean").norm()
    summed = last_noise(0.1, "sum").norm()
    assert 0.95 * plain < mean <= plain
    assert summed < 0.7 * mean
