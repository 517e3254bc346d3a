"""Activation techniques in channels_last: the output keeps the activation's memory layout (an
NCHW draw would mix layouts, and drawing into a channels_last tensor directly is 7-8x slower),
and the draws keep their distribution."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dicelab.stages import Context
from dicelab.techniques import create_technique
from dicelab.techniques._draw import fill_like

CL = torch.channels_last


def channels_last_batch() -> torch.Tensor:
    return torch.randn(16, 8, 12, 12, generator=torch.Generator().manual_seed(0)).contiguous(
        memory_format=CL
    )


def test_fill_like_keeps_the_layout_and_fills_every_entry() -> None:
    x = channels_last_batch()
    gen = torch.Generator().manual_seed(1)
    out = fill_like(x, lambda t: t.uniform_(generator=gen))
    assert out.is_contiguous(memory_format=CL) and out.shape == x.shape
    assert 0.0 <= out.min() and out.max() < 1.0 and abs(out.mean().item() - 0.5) < 0.01
    flat = torch.randn(4, 5)
    assert fill_like(flat, lambda t: t.fill_(2.0)).eq(2.0).all()


@pytest.mark.parametrize(
    ("name", "params", "site"),
    [
        ("activation_noise", {"std": 0.5}, nn.ReLU()),
        ("dropconnect", {"p": 0.3}, nn.Conv2d(8, 8, 3, padding=1)),
    ],
)
def test_hooked_activations_stay_channels_last(name: str, params: dict, site: nn.Module) -> None:
    model = nn.Sequential(nn.Conv2d(8, 8, 1), site, nn.Flatten(), nn.Linear(8 * 144, 2))
    model.to(memory_format=CL)  # type: ignore[call-overload]
    seen: list[torch.Tensor] = []
    technique = create_technique(name, params)
    technique.attach(model, Context())
    model[1].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    x = channels_last_batch()
    model(x)
    perturbed = seen[0]
    assert perturbed.is_contiguous(memory_format=CL)
    clean = model[0](x)
    if name == "activation_noise":
        assert abs((perturbed - clean).std().item() - 0.5) < 0.02
    else:
        assert abs((perturbed == 0).float().mean().item() - 0.3) < 0.02
