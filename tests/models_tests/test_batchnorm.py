"""recalibrate_batchnorm recomputes running statistics exactly and restores the model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dicelab.models import build_model, recalibrate_batchnorm


def _batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [5.0 + 3.0 * torch.randn(16, 4, generator=gen) for _ in range(6)]


def test_recalibration_gives_the_exact_batch_average() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, momentum=0.01))
    batches = _batches()
    with torch.no_grad():
        features = [model[0](b) for b in batches]
        for b in batches:
            model(b)
    bn = model[1]
    exact_mean = torch.stack([f.mean(0) for f in features]).mean(0)
    exact_var = torch.stack([f.var(0, unbiased=True) for f in features]).mean(0)
    # Six steps at momentum 0.01 leave the estimates close to their initial 0 and 1.
    assert (bn.running_mean - exact_mean).abs().max() > 0.5 * exact_mean.abs().max()
    assert not torch.allclose(bn.running_var, exact_var, rtol=0.5)

    model.eval()
    weight = model[0].weight.clone()
    recalibrate_batchnorm(model, iter(batches))
    torch.testing.assert_close(bn.running_mean, exact_mean)
    torch.testing.assert_close(bn.running_var, exact_var)
    assert bn.momentum == 0.01
    assert not model.training and not bn.training
    assert torch.equal(model[0].weight, weight)


def test_recalibration_keeps_training_mode_and_presets() -> None:
    model = build_model("vgg", input_shape=(1, 8, 8), num_classes=3, batchnorm="keras")
    model.train()
    recalibrate_batchnorm(model, [torch.randn(4, 1, 8, 8) for _ in range(2)])
    assert model.training
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.momentum == 0.01 and int(m.num_batches_tracked) == 2 for m in layers)


def test_recalibration_without_batches() -> None:
    model = nn.Sequential(nn.BatchNorm1d(2))
    model[0].running_mean.fill_(3.0)
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate_batchnorm(model, [])
    assert torch.equal(model[0].running_mean, torch.full((2,), 3.0))


def test_model_without_batchnorm_is_untouched() -> None:
    model = build_model("fc", input_shape=(1, 8, 8), num_classes=3)
    model.eval()
    recalibrate_batchnorm(model, [torch.randn(2, 1, 8, 8)])
    assert not model.training
