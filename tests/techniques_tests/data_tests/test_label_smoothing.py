"""Label smoothing: (1 − eps)·onehot(y) + eps/K, the same loss as PyTorch's label_smoothing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques import Injector
from dicelab.techniques.data.label_smoothing import LabelSmoothing

K = 10


def inputs(batch: int = 64) -> torch.Tensor:
    return torch.rand(batch, 1, 4, 4, generator=torch.Generator().manual_seed(0))


def labels(batch: int = 64) -> torch.Tensor:
    return torch.randint(0, K, (batch,), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0])
def test_targets_follow_the_formula(eps: float) -> None:
    y = labels()
    _, targets = LabelSmoothing(eps=eps).on_batch(inputs(), y, Context(num_classes=K))
    expected = (1 - eps) * F.one_hot(y, K).float() + eps / K
    torch.testing.assert_close(targets, expected)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(len(y)))


@pytest.mark.parametrize("eps", [0.1, 0.3, 0.9])
def test_loss_equals_pytorch_label_smoothing(eps: float) -> None:
    y = labels()
    logits = torch.randn(len(y), K, generator=torch.Generator().manual_seed(2))
    injector = Injector([LabelSmoothing(eps=eps)])
    injector.ctx.num_classes = K
    _, targets = injector.data(inputs(), y)
    ours = F.cross_entropy(logits, targets, reduction="none")
    torch_ls = F.cross_entropy(logits, y, reduction="none", label_smoothing=eps)
    torch.testing.assert_close(ours, torch_ls)


def test_soft_targets_get_the_same_mixing() -> None:
    soft = torch.softmax(torch.randn(8, K, generator=torch.Generator().manual_seed(3)), dim=1)
    _, targets = LabelSmoothing(eps=0.2).on_batch(inputs(8), soft, Context(num_classes=K))
    torch.testing.assert_close(targets, 0.8 * soft + 0.2 / K)


def test_targets_take_the_input_dtype() -> None:
    x = inputs().to(torch.float64)
    _, targets = LabelSmoothing(eps=0.1).on_batch(x, labels(), Context(num_classes=K))
    assert targets.dtype == torch.float64


def test_hard_labels_need_the_number_of_classes() -> None:
    with pytest.raises(RuntimeError, match="num_classes"):
        LabelSmoothing(eps=0.1).on_batch(inputs(), labels(), Context())


def test_deterministic_and_seed_independent() -> None:
    # label smoothing draws no random numbers: any two seeds give the same targets
    results = []
    for seed in (0, 0, 1):
        technique = LabelSmoothing(eps=0.3)
        streams = RandomStreams(seed)
        technique.bind(streams)
        results.append(technique.on_batch(inputs(), labels(), Context(num_classes=K))[1])
        assert streams.state_dict() == {}
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])
    assert LabelSmoothing.deterministic


@pytest.mark.parametrize("bad", [-0.1, 1.5, "some"])
def test_bad_eps_is_rejected(bad: object) -> None:
    with pytest.raises(ConfigError, match="techniques.label_smoothing.eps"):
        LabelSmoothing(eps=bad)  # type: ignore[arg-type]
