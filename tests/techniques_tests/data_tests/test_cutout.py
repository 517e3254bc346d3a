"""Cutout: one exact square hole per image, centre uniform over the image, clipped at the edge."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques.data.cutout import Cutout


def bound(seed: int = 0, **params: object) -> Cutout:
    technique = Cutout(**params)  # type: ignore[arg-type]
    technique.bind(RandomStreams(seed))
    return technique


def images(batch: int, channels: int, size: int) -> torch.Tensor:
    # values in [-2, -1) ∪ [1, 2): no zero of their own, negative ones as after normalisation
    x = torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(0)) + 1
    return torch.where(torch.arange(size) % 2 == 0, x, -x)


def holes(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The zeroed pixels ``(B, H, W)``, checking that every other value is untouched and that
    a hole goes through every channel."""
    zero = out == 0
    assert torch.equal(torch.where(zero, x, out), x)
    assert torch.equal(zero, zero[:, :1].expand_as(zero))
    return zero[:, 0]


def spans(hole: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First index and length of each hole along ``dim`` (1: rows, 2: columns)."""
    covered = hole.any(dim=3 - dim)  # (B, H) or (B, W)
    first = covered.int().argmax(dim=1)
    return first, covered.sum(dim=1)


def centres(hole: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """The centre each hole was drawn around: its first index plus ⌊s/2⌋, or, when clipped at
    the start of the axis, its end minus the part of the square after the centre."""
    first, length = spans(hole, dim)
    half = size // 2
    return torch.where(first > 0, first + half, first + length - (size - half))


@pytest.mark.parametrize("size", [4, 5])
def test_holes_are_clipped_squares_around_a_uniform_centre(size: int) -> None:
    """Every hole is the square [c − ⌊s/2⌋, c − ⌊s/2⌋ + s)² clipped to the image; the 64
    centres of an 8×8 image each come up about 1/64 of the time (chi-square, 63 d.o.f.)."""
    batch = 6400
    x = images(batch, 2, 8)
    out, _ = bound(size=size, p=1.0).on_batch(x, torch.zeros(batch), Context())
    hole = holes(x, out)
    rows, cols = centres(hole, size, 1), centres(hole, size, 2)
    # the zero set is exactly the clipped square around the recovered centre
    grid = torch.arange(8)
    start_r, start_c = rows - size // 2, cols - size // 2
    in_rows = (grid >= start_r[:, None]) & (grid < start_r[:, None] + size)
    in_cols = (grid >= start_c[:, None]) & (grid < start_c[:, None] + size)
    assert torch.equal(hole, in_rows[:, :, None] & in_cols[:, None, :])
    counts = torch.bincount(rows * 8 + cols, minlength=64)
    assert len(counts) == 64
    assert chisquare(counts.tolist()).pvalue > 1e-3, counts


def test_hole_area_matches_its_distribution_on_cifar_images() -> None:
    """Cutout 16 on 32×32: the mean area and the share of unclipped (256-pixel) holes agree
    with the exact values over the 1,024 equally likely centres (4 standard errors)."""
    batch, size = 4000, 16
    x = images(batch, 1, 32)
    out, _ = bound(size=size, p=1.0).on_batch(x, torch.zeros(batch), Context())
    area = holes(x, out).sum(dim=(1, 2)).double()
    centre = torch.arange(32)
    side = (centre + size - size // 2).clamp(max=32) - (centre - size // 2).clamp(min=0)
    exact = (side[:, None] * side[None, :]).double().flatten()  # area of each centre's hole
    assert abs(area.mean() - exact.mean()) < 4 * exact.std() / batch**0.5
    full, p_full = (area == size * size).double().mean(), (exact == size * size).double().mean()
    assert abs(full - p_full) < 4 * (p_full * (1 - p_full) / batch) ** 0.5
    assert area.min() >= (size // 2) ** 2 and area.max() <= size * size


def test_about_a_share_p_of_the_images_get_a_hole() -> None:
    batch = 4000
    x = images(batch, 1, 28)
    out, _ = bound(size=8, p=0.3).on_batch(x, torch.zeros(batch), Context())
    cut = int(holes(x, out).flatten(1).any(dim=1).sum())
    # Binomial(4000, 0.3): sd 29, so ±116 is 4 sd
    assert abs(cut - 0.3 * batch) <= 116
    never, _ = bound(size=8, p=0.0).on_batch(x, torch.zeros(batch), Context())
    assert torch.equal(never, x)


def test_channels_last_gives_the_same_holes_and_keeps_its_layout() -> None:
    x = images(16, 3, 32)
    plain, _ = bound(seed=2, size=16).on_batch(x, torch.zeros(16), Context())
    fast = x.contiguous(memory_format=torch.channels_last)
    out, _ = bound(seed=2, size=16).on_batch(fast, torch.zeros(16), Context())
    assert torch.equal(out, plain)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_a_hole_larger_than_the_image_blanks_it() -> None:
    x = images(8, 1, 8)
    out, _ = bound(size=17, p=1.0).on_batch(x, torch.zeros(8), Context())
    assert bool((out == 0).all())


def test_evaluation_is_an_identity_and_bad_settings_are_rejected() -> None:
    x = images(4, 3, 8)
    out, _ = bound(size=4).on_batch(x, torch.zeros(4), Context(training=False))
    assert out is x
    with pytest.raises(ConfigError, match=r"techniques\.cutout.*\(B, C, H, W\)"):
        bound(size=4).on_batch(torch.rand(4, 40), torch.zeros(4), Context())
    with pytest.raises(ConfigError, match="techniques.cutout.p"):
        Cutout(size=4, p=1.5)
    with pytest.raises(ConfigError, match="techniques.cutout.size"):
        Cutout(size=-2)
