"""Rotation: per-image angles in U[−2π·factor, 2π·factor], counter-clockwise, reflect fill;
and the independence of augmentation streams from each other."""

from __future__ import annotations

import math

import pytest
import torch

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques import Injector
from dicelab.techniques._augment import resample
from dicelab.techniques.data.rotation import Rotation, rotation_matrix
from dicelab.techniques.data.translation import Translation


def bound(seed: int = 0, **params: float) -> Rotation:
    technique = Rotation(**params)
    technique.bind(RandomStreams(seed))
    return technique


def images(batch: int = 16, height: int = 9, width: int = 9) -> torch.Tensor:
    return torch.rand(batch, 2, height, width, generator=torch.Generator().manual_seed(0))


def labels(batch: int = 16) -> torch.Tensor:
    return torch.zeros(batch, dtype=torch.long)


@pytest.mark.parametrize("size", [8, 9])
def test_quarter_turn_is_rot90(size: int) -> None:
    # At exactly 90° every sample falls on a pixel centre: only float rounding of cos/sin
    # (~1e-7) enters the bilinear weights.
    x = images(3, size, size)
    out = resample(x, rotation_matrix(torch.full((3,), math.pi / 2)))
    torch.testing.assert_close(out, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_half_turn_of_a_non_square_image_is_rigid() -> None:
    x = images(2, 5, 12)
    out = resample(x, rotation_matrix(torch.full((2,), math.pi)))
    torch.testing.assert_close(out, x.flip(-1).flip(-2), atol=1e-5, rtol=0)


def test_symmetric_pattern_is_invariant_under_its_symmetry() -> None:
    # A pattern with 4-fold symmetry (a centred ring) is unchanged by a quarter turn.
    coords = torch.arange(11.0) - 5.0
    ring = ((coords.view(-1, 1) ** 2 + coords.view(1, -1) ** 2).sqrt() - 3.0).abs() < 1.0
    x = ring.float().expand(1, 1, 11, 11).contiguous()
    out = resample(x, rotation_matrix(torch.tensor([-math.pi / 2])))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_angles_lie_in_the_range_and_are_uniform() -> None:
    factor = 0.2
    angles = bound(factor=factor).draw_angles(100_000, torch.device("cpu"))
    limit = factor * 2 * math.pi
    assert angles.abs().max().item() <= limit
    # U[−a, a]: mean 0 (sd a/sqrt(3e5) ≈ 0.0023 here), |θ| has mean a/2 (sd ≈ 0.0023):
    # ±0.012 is about 5 sd.
    assert abs(angles.mean().item()) < 0.012
    assert abs(angles.abs().mean().item() - limit / 2) < 0.012


def test_each_image_gets_its_own_angle() -> None:
    x = images(1).expand(16, -1, -1, -1).contiguous()
    out, _ = bound(factor=0.2).on_batch(x, labels(), Context())
    flat = out.flatten(1)
    distinct = {tuple(row.tolist()) for row in flat}
    assert len(distinct) == 16


def test_output_is_the_drawn_rotation() -> None:
    x = images()
    out, _ = bound(factor=0.1).on_batch(x, labels(), Context())
    angles = bound(factor=0.1).draw_angles(16, torch.device("cpu"))
    assert torch.equal(out, resample(x, rotation_matrix(angles)))


def test_draws_do_not_depend_on_other_techniques() -> None:
    x = images()
    # rotation alone, on a fresh stream
    alone, _ = bound(0, factor=0.1).on_batch(x, labels(), Context())
    # rotation after translation drew from its own stream of the same RandomStreams
    streams = RandomStreams(0)
    rotation, translation = Rotation(factor=0.1), Translation(factor=0.1)
    rotation.bind(streams)
    translation.bind(streams)
    translation.on_batch(x, labels(), Context())
    beside, _ = rotation.on_batch(x, labels(), Context())
    assert torch.equal(alone, beside)
    # through the Injector: rotation then translation equals each applied on its own stream
    both, _ = Injector([Translation(factor=0.1), Rotation(factor=0.1)], seed=3).data(x, labels())
    rotated, _ = Injector([Rotation(factor=0.1)], seed=3).data(x, labels())
    shifted, _ = Injector([Translation(factor=0.1)], seed=3).data(rotated, labels())
    assert torch.equal(both, shifted)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_keeps_dtype_and_shape(dtype: torch.dtype) -> None:
    x = images().to(dtype)
    out, _ = bound(factor=0.2).on_batch(x, labels(), Context())
    assert out.dtype == dtype and out.shape == x.shape


def test_non_image_input_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"techniques\.rotation.*\(B, C, H, W\)"):
        bound(factor=0.1).on_batch(torch.rand(4, 1, 40), labels(4), Context())


@pytest.mark.parametrize("bad", [-0.1, 1.5, "a lot"])
def test_bad_factor_is_rejected(bad: object) -> None:
    with pytest.raises(ConfigError, match="techniques.rotation.factor"):
        Rotation(factor=bad)  # type: ignore[arg-type]
