"""Input noise: x + N(0, std²) element-wise, on inputs of any shape, training only."""

from __future__ import annotations

import pytest
import torch

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques.data.input_noise import InputNoise

N = 1_000_000


def bound(seed: int = 0, **params: float) -> InputNoise:
    technique = InputNoise(**params)
    technique.bind(RandomStreams(seed))
    return technique


def images(batch: int = 16) -> torch.Tensor:
    return torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def labels(batch: int = 16) -> torch.Tensor:
    return torch.zeros(batch, dtype=torch.long)


@pytest.mark.parametrize("std", [0.05, 0.5])
def test_noise_has_the_requested_std(std: float) -> None:
    x = torch.full((1000, 1000), 0.5)
    out, _ = bound(std=std).on_batch(x, labels(1000), Context())
    noise = out - x
    # 1e6 normals: the sample std has relative sd 1/sqrt(2N) ≈ 7e-4, so ±0.5 % is ~7 sd; the
    # sample mean has sd std/1000, so 5·std/1000 is 5 sd.
    assert noise.std().item() == pytest.approx(std, rel=0.005)
    assert abs(noise.mean().item()) < 5 * std / 1000


def test_noise_is_the_technique_stream_exactly() -> None:
    x = images()
    out, _ = bound(std=0.3).on_batch(x, labels(), Context())
    reference = RandomStreams(0).generator("technique/input_noise")
    assert torch.equal(out, x + 0.3 * torch.randn(x.shape, generator=reference))


def test_works_on_one_dimensional_signals() -> None:
    x = torch.zeros(32, 40)  # mnist1d batches are (B, 40)
    out, _ = bound(std=0.1).on_batch(x, labels(32), Context())
    assert out.shape == x.shape and bool((out != 0).all())


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_keeps_dtype(dtype: torch.dtype) -> None:
    out, _ = bound(std=0.2).on_batch(images().to(dtype), labels(), Context())
    assert out.dtype == dtype


@pytest.mark.parametrize("bad", [-0.1, "loud"])
def test_bad_std_is_rejected(bad: object) -> None:
    with pytest.raises(ConfigError, match="techniques.input_noise.std"):
        InputNoise(std=bad)  # type: ignore[arg-type]
