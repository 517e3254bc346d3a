"""The standard CIFAR augmentation together: random crop, normalize and cutout through the
Injector (seeds, global RNG, layouts, the authors' order) and through ``dicelab train``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

from dicelab import paper_space
from dicelab.analysis.runs import load_trained
from dicelab.cli import main
from dicelab.config import load_config
from dicelab.data import to_float
from dicelab.techniques import Injector
from dicelab.techniques.data.normalize import PRESETS, Normalize
from dicelab.tune.objective import SearchSpace, configure

SHAPES = [(1, 28, 28), (3, 32, 32)]


def settings(name: str, channels: int) -> dict[str, Any]:
    """A typical setting of technique ``name`` for images with ``channels`` channels."""
    return {
        "random_crop": {"padding": 4},
        "cutout": {"size": 16},
        "normalize": {"preset": "mnist" if channels == 1 else "cifar10"},
    }[name]


def run(name: str, shape: tuple[int, ...], *, seed: int, channels_last: bool) -> torch.Tensor:
    """Two training batches of 32 through an Injector with only ``name`` on."""
    injector = Injector.from_config({name: settings(name, shape[0])}, seed=seed)
    x = torch.rand(32, *shape, generator=torch.Generator().manual_seed(7))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.zeros(32, dtype=torch.long)
    outs = [injector.data(x, y)[0] for _ in range(2)]
    for out in outs:
        assert out.shape == x.shape and out.dtype == x.dtype
        assert out.is_contiguous(memory_format=torch.channels_last) == channels_last or (
            shape[0] == 1
        )
    return torch.stack(outs)


@pytest.mark.parametrize("name", ["random_crop", "cutout", "normalize"])
@pytest.mark.parametrize("shape", SHAPES, ids=["1x28x28", "3x32x32"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_seeded_stream_independent_of_the_global_rng(
    name: str, shape: tuple[int, ...], channels_last: bool
) -> None:
    """Same seed, same batches whatever the global generator's state (which is never
    touched); another seed, other batches (normalize draws nothing); the batches differ from
    one step to the next (a fresh draw per batch)."""
    torch.manual_seed(1)
    first = run(name, shape, seed=3, channels_last=channels_last)
    torch.manual_seed(2)
    state = torch.get_rng_state()
    assert torch.equal(run(name, shape, seed=3, channels_last=channels_last), first)
    assert torch.equal(torch.get_rng_state(), state)
    other = run(name, shape, seed=4, channels_last=channels_last)
    assert torch.equal(other, first) == (name == "normalize")
    assert torch.equal(first[0], first[1]) == (name == "normalize")


def test_the_authors_order_crop_pads_black_pixels_and_cutout_zeroes_normalised_ones() -> None:
    """flip → random crop → normalize → cutout (the RWP authors' transforms): on grey images
    the crop's padding comes out as the normalised black (−mean/std), the image as the
    normalised grey and the holes as exact zeros; any other order loses one of the three."""
    injector = Injector.from_config(
        {
            "flip": "horizontal",
            "random_crop": 4,
            "normalize": "cifar10",
            "cutout": {"size": 16, "p": 1.0},
        },
        seed=0,
    )
    x = torch.full((64, 3, 32, 32), 0.5)
    out, _ = injector.data(x, torch.zeros(64, dtype=torch.long))
    mean, std = PRESETS["cifar10"]
    technique = Normalize(preset="cifar10")
    black = technique.normalize(torch.zeros(1, 3, 1, 1)).flatten()
    grey = technique.normalize(torch.full((1, 3, 1, 1), 0.5)).flatten()
    for k in range(3):
        channel = out[:, k]
        is_black, is_grey, is_hole = channel == black[k], channel == grey[k], channel == 0
        assert bool((is_black | is_grey | is_hole).all())
        assert bool(is_black.any() and is_grey.any() and is_hole.any())
        assert black[k] == pytest.approx(-mean[k] / std[k])


def test_a_search_keeps_them_fixed_beside_paper_1s_genes() -> None:
    """They are no genes of paper 1's 22-gene space; set in a search's base configuration,
    they stay on, unchanged, in every trial beside the searched genes."""
    assert len(paper_space.GENES) == 22
    assert not {g.technique for g in paper_space.GENES} & {"random_crop", "cutout", "normalize"}
    base = load_config(
        overrides=[
            "techniques.random_crop=4",
            "techniques.cutout=16",
            "techniques.normalize=cifar10",
            "techniques.flip=horizontal",
        ]
    )
    trial = configure(base, SearchSpace.paper(["dropout", "flip"]), {"dropout": 0.3, "flip": 4})
    assert trial.techniques == {
        **base.techniques,
        "flip": {"mode": "vertical"},
        "dropout": {"p": 0.3},
    }


def test_dicelab_train_with_the_three_on(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A short ``dicelab train`` on digits with random crop, cutout and normalize: it completes,
    records the three resolved in its configuration, and the trained network loaded back for
    the analyses still normalises its inputs."""
    folder = tmp_path / "run"
    sets = [
        "data.name=digits",
        f"data.root={data_root}",
        "device=cpu",
        "model.width=8",
        "data.train_limit=256",
        "train.batch_size=32",
        "train.epochs=2",
        "techniques.random_crop=2",
        "techniques.cutout.size=4",
        "techniques.normalize=mnist",
    ]
    args = ["train", *[a for s in sets for a in ("--set", s)], "--out", str(folder), "--quiet"]
    assert main(args) == 0
    capsys.readouterr()
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["techniques"] == {
        "random_crop": {"padding": 2, "mode": "zero"},
        "cutout": {"size": 4, "p": 0.5},
        "normalize": {"preset": "mnist", "mean": [], "std": []},
    }
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "completed"
    trained = load_trained(folder)
    first_layer = next(m for m in trained.model.modules() if isinstance(m, nn.Conv2d))
    seen: list[torch.Tensor] = []
    first_layer.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    x = to_float(trained.data.test.x[:16])
    with torch.no_grad():
        trained.model(x)
    assert torch.equal(seen[0], Normalize(preset="mnist").normalize(x))
