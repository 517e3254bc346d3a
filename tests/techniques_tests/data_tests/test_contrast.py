"""Contrast: x ← clip((x − mean)·c + mean, 0, 1), one c ~ U[1 − f, 1 + f] per image."""

from __future__ import annotations

import pytest
import torch

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques.data.contrast import Contrast


def bound(seed: int = 0, **params: float) -> Contrast:
    technique = Contrast(**params)
    technique.bind(RandomStreams(seed))
    return technique


def images(batch: int = 16) -> torch.Tensor:
    return torch.rand(batch, 3, 6, 7, generator=torch.Generator().manual_seed(0))


def labels(batch: int = 16) -> torch.Tensor:
    return torch.zeros(batch, dtype=torch.long)


def test_formula_on_a_constructed_batch() -> None:
    # image 0: channel means 0.5 and 0.25; values chosen so nothing is clipped at c ≤ 1.2
    x = torch.tensor([[[[0.3, 0.7], [0.4, 0.6]], [[0.2, 0.3], [0.25, 0.25]]]])
    factors = bound(factor=0.2).draw_factors(1, torch.device("cpu"))
    out, _ = bound(factor=0.2).on_batch(x, labels(1), Context())
    mean = torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)
    torch.testing.assert_close(out, (x - mean) * factors.view(1, 1, 1, 1) + mean)
    torch.testing.assert_close(out.mean(dim=(-2, -1)), mean.view(1, 2))


def test_formula_with_clipping_per_image_and_channel() -> None:
    x = images()
    out, _ = bound(factor=0.5).on_batch(x, labels(), Context())
    factors = bound(factor=0.5).draw_factors(16, torch.device("cpu")).view(-1, 1, 1, 1)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    assert torch.equal(out, ((x - mean) * factors + mean).clamp(0, 1))
    assert out.min().item() >= 0.0 and out.max().item() <= 1.0
    assert factors.unique().numel() == 16  # one factor per image


def test_factors_lie_in_the_range_and_are_uniform() -> None:
    factor = 0.2
    factors = bound(factor=factor).draw_factors(100_000, torch.device("cpu"))
    assert (factors - 1).abs().max().item() <= factor + 1e-6
    # U[1 − f, 1 + f]: mean 1 and |c − 1| mean f/2, each with sd ≈ 3.7e-4; ±0.002 ≈ 5 sd
    assert abs(factors.mean().item() - 1) < 0.002
    assert abs((factors - 1).abs().mean().item() - factor / 2) < 0.002


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_keeps_dtype(dtype: torch.dtype) -> None:
    out, _ = bound(factor=0.2).on_batch(images().to(dtype), labels(), Context())
    assert out.dtype == dtype


def test_non_image_input_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"techniques\.contrast.*\(B, C, H, W\)"):
        bound(factor=0.1).on_batch(torch.rand(4, 40), labels(4), Context())


@pytest.mark.parametrize("bad", [-0.1, 1.5, "high"])
def test_bad_factor_is_rejected(bad: object) -> None:
    with pytest.raises(ConfigError, match="techniques.contrast.factor"):
        Contrast(factor=bad)  # type: ignore[arg-type]
