"""Shuffle: a fresh full permutation every epoch, reproducible from the seed; off keeps order."""

from __future__ import annotations

import pytest
import torch

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques import Injector
from dicelab.techniques.data.shuffle import Shuffle

SIZE = 1000


def bound(seed: int = 0, **params: bool) -> Shuffle:
    technique = Shuffle(**params)
    technique.bind(RandomStreams(seed))
    return technique


def orders(technique: Shuffle, epochs: int) -> list[torch.Tensor]:
    out = []
    for epoch in range(epochs):
        order = technique.data_order(SIZE, Context(epoch=epoch))
        assert order is not None
        out.append(order)
    return out


def test_each_epoch_is_a_permutation_and_epochs_differ() -> None:
    epochs = orders(bound(enabled=True), 3)
    for order in epochs:
        assert order.dtype == torch.int64
        assert torch.equal(order.sort().values, torch.arange(SIZE))
    # two equal permutations of 1000 elements by chance: probability 1/1000!
    assert not torch.equal(epochs[0], epochs[1])
    assert not torch.equal(epochs[1], epochs[2])


def test_permutation_is_full_not_windowed() -> None:
    # A windowed shuffle (the authors' buffer of 1024) keeps examples near their place; a full
    # permutation moves them N/3 places on average (here 333); 250 leaves a wide margin.
    technique = Shuffle(enabled=True)
    size = 100_000
    order = technique.data_order(size, Context())
    assert order is not None
    displacement = (order - torch.arange(size)).abs().float().mean().item()
    assert displacement > 0.25 * size


def test_same_seed_same_orders_other_seed_other_orders() -> None:
    first = orders(bound(0, enabled=True), 3)
    again = orders(bound(0, enabled=True), 3)
    other = orders(bound(1, enabled=True), 3)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_off_keeps_the_stored_order_and_draws_nothing() -> None:
    streams = RandomStreams(0)
    technique = Shuffle()
    technique.bind(streams)
    assert technique.is_noop
    assert technique.data_order(SIZE, Context()) is None
    assert streams.state_dict() == {}
    assert Injector([Shuffle()]).data_order(SIZE) is None


def test_not_training_keeps_the_stored_order() -> None:
    assert bound(enabled=True).data_order(SIZE, Context(training=False)) is None


def test_injector_uses_the_technique_stream() -> None:
    injector = Injector([Shuffle(enabled=True)], seed=5)
    expected = torch.randperm(SIZE, generator=RandomStreams(5).generator("technique/shuffle"))
    order = injector.data_order(SIZE)
    assert order is not None and torch.equal(order, expected)


@pytest.mark.parametrize("bad", ["yes", 2, None])
def test_bad_value_is_rejected(bad: object) -> None:
    with pytest.raises(ConfigError, match="techniques.shuffle.enabled"):
        Shuffle(enabled=bad)  # type: ignore[arg-type]
