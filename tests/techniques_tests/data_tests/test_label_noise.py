"""Label noise: a fixed fraction p of the training labels moved to another class, once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques import Injector
from dicelab.techniques.data.label_noise import LabelNoise
from dicelab.techniques.data.label_smoothing import LabelSmoothing

N = 100_000
K = 10


def ready(p: float, seed: int = 0, *, size: int = N, classes: int = K) -> LabelNoise:
    technique = LabelNoise(p=p)
    technique.bind(RandomStreams(seed))
    technique.setup(nn.Identity(), Context(num_classes=classes, train_size=size))
    return technique


def dataset_labels(size: int = N, classes: int = K) -> torch.Tensor:
    return torch.randint(0, classes, (size,), generator=torch.Generator().manual_seed(7))


def noisy(technique: LabelNoise, y: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    ctx = Context(num_classes=K, train_size=N, indices=indices)
    return technique.on_batch(torch.zeros(len(y), 1), y, ctx)[1]


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_flips_a_fraction_p_and_never_to_the_same_class(p: float) -> None:
    y = dataset_labels()
    out = noisy(ready(p), y, torch.arange(N))
    changed = out != y
    # Binomial(1e5, p) / 1e5 has sd <= 0.0016; ±0.008 is 5 sd.
    assert abs(changed.float().mean().item() - p) < 0.008
    # a label is corrupted exactly where the table says so: never "flipped" to itself
    offset = ready(p).state_dict()["offset"]
    assert torch.equal(changed, offset != 0)
    assert int(offset.min()) >= 0 and int(offset.max()) <= K - 1
    assert int(out.min()) >= 0 and int(out.max()) <= K - 1


def test_new_label_is_uniform_over_the_other_classes() -> None:
    y = torch.zeros(N, dtype=torch.long)  # every example is class 0
    out = noisy(ready(0.5), y, torch.arange(N))
    counts = torch.bincount(out[out != 0], minlength=K)[1:].float()
    # ~5e4 flipped over 9 classes: each count ~ 5556 with sd ≈ 70; ±400 is about 5.7 sd
    assert (counts - counts.mean()).abs().max().item() < 400
    assert counts.min().item() > 0


def test_corruption_is_fixed_for_the_run() -> None:
    technique = ready(0.3)
    y = dataset_labels()
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    first = noisy(technique, y, torch.arange(N))
    # another epoch, another order and batching: each example keeps its corrupted label
    for chunk in perm.split(4096):
        assert torch.equal(noisy(technique, y[chunk], chunk), first[chunk])


def test_deterministic_given_the_seed() -> None:
    y = dataset_labels()
    first = noisy(ready(0.3, 0), y, torch.arange(N))
    again = noisy(ready(0.3, 0), y, torch.arange(N))
    other = noisy(ready(0.3, 1), y, torch.arange(N))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_state_round_trip() -> None:
    technique = ready(0.3)
    restored = LabelNoise(p=0.3)
    restored.load_state_dict(technique.state_dict())
    y, indices = dataset_labels()[:512], torch.arange(512)
    assert torch.equal(noisy(restored, y, indices), noisy(technique, y, indices))
    assert LabelNoise(p=0.3).state_dict() == {}


def test_soft_targets_move_with_the_label() -> None:
    technique = ready(0.5, size=256)
    y = dataset_labels(256)
    indices = torch.arange(256)
    hard = noisy(technique, y, indices)
    soft = noisy(technique, nn.functional.one_hot(y, K).float(), indices)
    assert torch.equal(soft, nn.functional.one_hot(hard, K).float())


def test_runs_before_label_smoothing_in_the_injector() -> None:
    injector = Injector([LabelSmoothing(eps=0.1), LabelNoise(p=0.5)], seed=0)
    injector.setup(nn.Identity(), num_classes=K, train_size=256)
    y = dataset_labels(256)
    _, targets = injector.data(torch.zeros(256, 1), y, torch.arange(256))
    expected = noisy(ready(0.5, size=256), y, torch.arange(256))
    torch.testing.assert_close(targets, 0.9 * nn.functional.one_hot(expected, K) + 0.01)


def test_missing_indices_are_a_clear_error() -> None:
    technique = ready(0.3, size=16)
    with pytest.raises(RuntimeError, match=r"Injector\.data\(x, y, indices\)"):
        technique.on_batch(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), Context())


def test_setup_needs_sizes() -> None:
    with pytest.raises(RuntimeError, match="train_size"):
        LabelNoise(p=0.3).setup(nn.Identity(), Context(num_classes=K))


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half"])
def test_bad_p_is_rejected(bad: object) -> None:
    with pytest.raises(ConfigError, match="techniques.label_noise.p"):
        LabelNoise(p=bad)  # type: ignore[arg-type]
