"""Zoom: independent per-image height/width amounts in U[−f, f]; positive zooms out."""

from __future__ import annotations

import pytest
import torch

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques._augment import resample
from dicelab.techniques.data.zoom import Zoom, zoom_matrix


def bound(seed: int = 0, **params: float) -> Zoom:
    technique = Zoom(**params)
    technique.bind(RandomStreams(seed))
    return technique


def images(batch: int = 16) -> torch.Tensor:
    return torch.rand(batch, 2, 10, 12, generator=torch.Generator().manual_seed(0))


def labels(batch: int = 16) -> torch.Tensor:
    return torch.zeros(batch, dtype=torch.long)


def test_amounts_lie_in_the_range_and_are_independent_uniforms() -> None:
    factor = 0.2
    amounts = bound(factor=factor).draw_amounts(100_000, torch.device("cpu"))
    assert amounts.shape == (100_000, 2)
    assert amounts.abs().max().item() <= factor
    # U[−f, f]: mean 0 and |z| mean f/2, each with sd ≈ f/sqrt(3e5) ≈ 3.7e-4; the height and
    # width amounts are uncorrelated (sample correlation sd 1/sqrt(1e5) ≈ 0.0032).
    # The tolerances are about 5 sd.
    assert amounts.mean(dim=0).abs().max().item() < 0.002
    assert (amounts.abs().mean(dim=0) - factor / 2).abs().max().item() < 0.002
    correlation = torch.corrcoef(amounts.T)[0, 1].item()
    assert abs(correlation) < 0.016


def test_positive_amount_zooms_out_negative_zooms_in() -> None:
    # On a horizontal ramp (pixel value = column) bilinear sampling is exact, so the output's
    # slope is the input distance between neighbouring output pixels, 1 + z_w.
    ramp = torch.arange(12.0).expand(1, 1, 10, 12).contiguous()
    for z_w in (-0.2, 0.2):
        out = resample(ramp, zoom_matrix(torch.tensor([[0.0, z_w]])))
        centre = out[0, 0, :, 4:8]  # near the centre: no reflection at the border
        torch.testing.assert_close(centre.diff(dim=-1), torch.full((10, 3), 1 + z_w))
    # zooming out shrinks the content: the image's content spans fewer output pixels
    x = torch.zeros(1, 1, 21, 21)
    x[..., 6:15, 6:15] = 1.0
    out = resample(x, zoom_matrix(torch.tensor([[0.5, 0.5]])))
    assert out[0, 0, 10].gt(0.5).sum().item() < 9


def test_output_is_the_drawn_zoom_per_image() -> None:
    x = images()
    out, _ = bound(factor=0.2).on_batch(x, labels(), Context())
    amounts = bound(factor=0.2).draw_amounts(16, torch.device("cpu"))
    assert torch.equal(out, resample(x, zoom_matrix(amounts)))
    assert amounts.unique().numel() == 32


def test_keeps_dtype_and_shape() -> None:
    x = images().to(torch.float64)
    out, _ = bound(factor=0.2).on_batch(x, labels(), Context())
    assert out.dtype == torch.float64 and out.shape == x.shape


def test_non_image_input_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"techniques\.zoom.*\(B, C, H, W\)"):
        bound(factor=0.1).on_batch(torch.rand(4, 40), labels(4), Context())


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0, "big"])
def test_bad_factor_is_rejected(bad: object) -> None:
    with pytest.raises(ConfigError, match="techniques.zoom.factor"):
        Zoom(factor=bad)  # type: ignore[arg-type]
