"""Translation: per-image shifts dy ~ U[−fH, fH], dx ~ U[−fW, fW] pixels, down/right > 0."""

from __future__ import annotations

import pytest
import torch

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques._augment import resample
from dicelab.techniques.data.translation import Translation, translation_matrix

HEIGHT, WIDTH = 10, 20


def bound(seed: int = 0, **params: float) -> Translation:
    technique = Translation(**params)
    technique.bind(RandomStreams(seed))
    return technique


def images(batch: int = 16) -> torch.Tensor:
    return torch.rand(batch, 2, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(0))


def labels(batch: int = 16) -> torch.Tensor:
    return torch.zeros(batch, dtype=torch.long)


def test_shifts_lie_in_the_range_scaled_by_height_and_width() -> None:
    factor = 0.2
    shifts = bound(factor=factor).draw_shifts(100_000, HEIGHT, WIDTH, torch.device("cpu"))
    fractions = shifts / torch.tensor([HEIGHT, WIDTH])
    assert fractions.abs().max().item() <= factor + 1e-6
    # each fraction ~ U[−f, f]: max |.| close to f (the chance that 1e5 draws all stay below
    # 0.99 f is 0.99**1e5), mean 0 and mean |.| = f/2 (sd ≈ 3.7e-4; ±0.002 is about 5 sd)
    assert fractions.abs().max(dim=0).values.min().item() > 0.99 * factor
    assert fractions.mean(dim=0).abs().max().item() < 0.002
    assert (fractions.abs().mean(dim=0) - factor / 2).abs().max().item() < 0.002


def test_positive_shift_moves_the_content_down_and_right() -> None:
    # whole-pixel shifts land on pixel centres: the interior is an exact copy
    x = images(1)
    out = resample(x, translation_matrix(torch.tensor([[2.0, 3.0]])))
    torch.testing.assert_close(out[..., 2:, 3:], x[..., :-2, :-3], atol=1e-5, rtol=0)
    # the uncovered strip is filled by reflection (d c b a | a b c d): row 1 mirrors row 0
    torch.testing.assert_close(out[..., 1, 3:], x[..., 0, :-3], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[..., 0, 3:], x[..., 1, :-3], atol=1e-5, rtol=0)


def test_output_is_the_drawn_shift_per_image() -> None:
    x = images()
    out, _ = bound(factor=0.2).on_batch(x, labels(), Context())
    shifts = bound(factor=0.2).draw_shifts(16, HEIGHT, WIDTH, torch.device("cpu"))
    assert torch.equal(out, resample(x, translation_matrix(shifts)))
    assert shifts.unique().numel() == 32


def test_keeps_dtype_and_shape() -> None:
    x = images().to(torch.float64)
    out, _ = bound(factor=0.2).on_batch(x, labels(), Context())
    assert out.dtype == torch.float64 and out.shape == x.shape


def test_non_image_input_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"techniques\.translation.*\(B, C, H, W\)"):
        bound(factor=0.1).on_batch(torch.rand(4, 40), labels(4), Context())


@pytest.mark.parametrize("bad", [-0.1, 1.1, "far"])
def test_bad_factor_is_rejected(bad: object) -> None:
    with pytest.raises(ConfigError, match="techniques.translation.factor"):
        Translation(factor=bad)  # type: ignore[arg-type]
