"""Flip: per-image Keras RandomFlip, exact mirrors, each axis with probability 1/2."""

from __future__ import annotations

import pytest
import torch

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques.data.flip import Flip

B = 1000


def bound(seed: int = 0, **params: str) -> Flip:
    technique = Flip(**params)
    technique.bind(RandomStreams(seed))
    return technique


def images(batch: int = B) -> torch.Tensor:
    # random images: no image equals its own mirror, so each outcome is identifiable
    return torch.rand(batch, 2, 5, 6, generator=torch.Generator().manual_seed(0))


def labels(batch: int = B) -> torch.Tensor:
    return torch.zeros(batch, dtype=torch.long)


def outcome_counts(mode: str) -> dict[str, int]:
    x = images()
    out, _ = bound(mode=mode).on_batch(x, labels(), Context())
    candidates = {
        "none": x,
        "horizontal": x.flip(-1),
        "vertical": x.flip(-2),
        "both": x.flip(-1).flip(-2),
    }
    matches = {name: (out == c).flatten(1).all(dim=1) for name, c in candidates.items()}
    total = torch.stack(list(matches.values())).sum(dim=0)
    assert torch.equal(total, torch.ones(B, dtype=total.dtype)), "each image is exactly one"
    return {name: int(m.sum()) for name, m in matches.items()}


@pytest.mark.parametrize("mode", ["horizontal", "vertical"])
def test_one_axis_flips_about_half_of_the_images(mode: str) -> None:
    counts = outcome_counts(mode)
    # Binomial(1000, 1/2): sd 15.8, so ±60 is about 4 sd.
    assert abs(counts[mode] - B / 2) <= 60
    assert counts["none"] + counts[mode] == B


def test_both_axes_flip_independently() -> None:
    counts = outcome_counts("horizontal_and_vertical")
    # each of the four outcomes is Binomial(1000, 1/4): sd 13.7, so ±55 is about 4 sd
    for name in ("none", "horizontal", "vertical", "both"):
        assert abs(counts[name] - B / 4) <= 55, counts


def test_keeps_labels_dtype_and_shape() -> None:
    x = images(8).to(torch.float64)
    y = labels(8)
    out, out_y = bound(mode="horizontal").on_batch(x, y, Context())
    assert out.dtype == torch.float64 and out.shape == x.shape
    assert out_y is y


def test_non_image_input_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"techniques\.flip.*\(B, C, H, W\)"):
        bound(mode="horizontal").on_batch(torch.rand(4, 40), labels(4), Context())


def test_bad_mode_is_rejected() -> None:
    with pytest.raises(ConfigError, match="techniques.flip.mode"):
        Flip(mode="diagonal")
