"""Random crop: torchvision RandomCrop(padding) per image, exact, offsets uniform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques.data.random_crop import RandomCrop


def bound(seed: int = 0, **params: object) -> RandomCrop:
    technique = RandomCrop(**params)  # type: ignore[arg-type]
    technique.bind(RandomStreams(seed))
    return technique


def images(batch: int, channels: int, size: int) -> torch.Tensor:
    # no zeros and (almost surely) no two equal pixels: every crop position is identifiable
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(0)) + 1


def padded(x: torch.Tensor, padding: int, mode: str) -> torch.Tensor:
    """NumPy's padding of the image sides (torchvision pads PIL images the same way)."""
    np_mode = {"zero": "constant", "reflect": "reflect"}[mode]
    sides = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    return torch.from_numpy(np.pad(x.numpy(), sides, mode=np_mode))


def reference(x: torch.Tensor, offsets: torch.Tensor, padding: int, mode: str) -> torch.Tensor:
    """Each padded image sliced at its own offset, one image at a time."""
    height, width = x.shape[-2:]
    crops = [
        image[:, a : a + height, b : b + width]
        for image, (a, b) in zip(padded(x, padding, mode), offsets.tolist(), strict=True)
    ]
    return torch.stack(crops)


@pytest.mark.parametrize("mode", ["zero", "reflect"])
@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_each_image_is_its_padded_self_cut_at_the_drawn_offset(
    mode: str, channels: int, size: int, channels_last: bool
) -> None:
    x = images(64, channels, size)
    offsets = bound(seed=5, padding=4, mode=mode).draw_offsets(64, torch.device("cpu"))
    given = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    out, _ = bound(seed=5, padding=4, mode=mode).on_batch(given, torch.zeros(64), Context())
    assert torch.equal(out, reference(x, offsets, 4, mode))
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last or channels == 1


@pytest.mark.parametrize("mode", ["zero", "reflect"])
def test_offsets_are_uniform_over_the_positions(mode: str) -> None:
    """Each of the (2p + 1)² = 25 windows, recovered from the output images alone, is taken
    by about 1/25 of 5,000 images (chi-square, 24 degrees of freedom)."""
    batch, padding = 5000, 2
    x = images(batch, 1, 6)
    out, _ = bound(padding=padding, mode=mode).on_batch(x, torch.zeros(batch), Context())
    big = padded(x, padding, mode)
    counts = []
    for a in range(2 * padding + 1):
        for b in range(2 * padding + 1):
            window = big[:, :, a : a + 6, b : b + 6]
            counts.append(int((out == window).flatten(1).all(dim=1).sum()))
    assert sum(counts) == batch  # every image is exactly one window
    assert chisquare(counts).pvalue > 1e-3, counts


def test_offset_p_p_is_the_identity_and_the_others_move_whole_pixels() -> None:
    x = images(1, 1, 5)
    out = reference(x, torch.tensor([[2, 2]]), 2, "zero")
    assert torch.equal(out, x)
    right = reference(x, torch.tensor([[2, 1]]), 2, "zero")  # window one column left: moves right
    assert torch.equal(right[..., 1:], x[..., :-1]) and bool((right[..., 0] == 0).all())


def test_reflect_padding_as_large_as_the_image_is_rejected() -> None:
    technique = bound(padding=8, mode="reflect")
    with pytest.raises(ConfigError, match=r"techniques\.random_crop\.padding.*mode=reflect"):
        technique.on_batch(torch.rand(2, 1, 8, 8), torch.zeros(2), Context())
    out, _ = bound(padding=8).on_batch(torch.rand(2, 1, 8, 8), torch.zeros(2), Context())
    assert out.shape == (2, 1, 8, 8)  # zero padding may exceed the image


def test_non_image_input_and_bad_settings_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"techniques\.random_crop.*\(B, C, H, W\)"):
        bound(padding=2).on_batch(torch.rand(4, 40), torch.zeros(4), Context())
    with pytest.raises(ConfigError, match="techniques.random_crop.mode"):
        RandomCrop(padding=2, mode="edge")
    with pytest.raises(ConfigError, match="techniques.random_crop.padding"):
        RandomCrop(padding=-1)


def test_evaluation_is_an_identity() -> None:
    x = images(4, 3, 8)
    out, _ = bound(padding=2).on_batch(x, torch.zeros(4), Context(training=False))
    assert out is x
