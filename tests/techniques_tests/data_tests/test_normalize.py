"""Normalize: (x − mean) / std per channel, on training batches and on every evaluation input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dicelab.config import config_hash, load_config, to_yaml
from dicelab.data import load_data, to_float
from dicelab.exceptions import ConfigError
from dicelab.stages import Context
from dicelab.techniques import Injector
from dicelab.techniques.data.normalize import PRESETS, Normalize
from dicelab.train import Trainer


def channel_image(values: tuple[float, ...], size: int = 4) -> torch.Tensor:
    """One image ``(1, C, size, size)`` whose channel k is the constant ``values[k]``."""
    return torch.tensor(values).view(1, -1, 1, 1).expand(1, len(values), size, size)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_each_preset_maps_its_mean_to_0_and_mean_plus_std_to_1(preset: str) -> None:
    mean, std = PRESETS[preset]
    technique = Normalize(preset=preset)
    at_mean, _ = technique.on_batch(channel_image(mean), torch.zeros(1), Context())
    assert torch.equal(at_mean, torch.zeros_like(at_mean))
    one_up = tuple(m + s for m, s in zip(mean, std, strict=True))
    at_one, _ = technique.on_batch(channel_image(one_up), torch.zeros(1), Context())
    assert torch.allclose(at_one, torch.ones_like(at_one), atol=1e-6)


def test_presets_have_one_value_per_channel_of_their_dataset() -> None:
    channels = {"mnist": 1, "fashion_mnist": 1, "cifar10": 3, "cifar100": 3}
    assert {name: (len(m), len(s)) for name, (m, s) in PRESETS.items()} == {
        name: (c, c) for name, c in channels.items()
    }


def test_mnist_preset_standardises_mnist() -> None:
    """On the mnist5k sample of MNIST the mnist preset gives mean ≈ 0 and std ≈ 1."""
    x = to_float(load_data("mnist5k").train.x)
    out, _ = Normalize(preset="mnist").on_batch(x, torch.zeros(len(x)), Context())
    assert abs(float(out.mean())) < 0.01 and abs(float(out.std()) - 1) < 0.01


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_and_their_inverse(dtype: torch.dtype) -> None:
    x = torch.rand(8, 3, 5, 5, dtype=dtype, generator=torch.Generator().manual_seed(0))
    mean, std = PRESETS["cifar100"]
    out, _ = Normalize(preset="cifar100").on_batch(x, torch.zeros(8), Context())
    m = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    assert out.dtype == dtype
    assert torch.allclose(out.double(), (x.double() - m) / s, atol=1e-6)
    assert torch.allclose(out.double() * s + m, x.double(), atol=1e-6)


def test_channels_last_and_other_ranks_keep_their_layout() -> None:
    x = torch.rand(4, 3, 6, 6).contiguous(memory_format=torch.channels_last)
    out, _ = Normalize(preset="cifar10").on_batch(x, torch.zeros(4), Context())
    assert out.is_contiguous(memory_format=torch.channels_last)
    plain, _ = Normalize(preset="cifar10").on_batch(x.contiguous(), torch.zeros(4), Context())
    assert torch.equal(out, plain)
    signal = torch.rand(4, 1, 40)  # (B, C, L): a one-channel signal
    custom = Normalize(preset="custom", mean=[0.5], std=[0.25])
    assert torch.equal(
        custom.on_batch(signal, torch.zeros(4), Context())[0], (signal - 0.5) / 0.25
    )


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"preset": "custom"}, "std", "one value per channel"),
        ({"preset": "custom", "mean": [0.5, 0.5], "std": [0.2]}, "std", "2 mean and 1 std"),
        ({"preset": "custom", "mean": [0.5], "std": [0.0]}, "std", "above 0"),
        ({"preset": "custom", "mean": ["a"], "std": [0.2]}, r"mean\[0\]", "must be a number"),
        ({"preset": "custom", "mean": 0.5, "std": [0.2]}, "mean", "must be a list"),
        ({"preset": "custom", "mean": [float("nan")], "std": [0.2]}, r"mean\[0\]", "finite"),
        ({"preset": "mnist", "mean": [0.5]}, "preset", "preset=custom only"),
        ({"preset": "imagenet"}, "preset", "allowed: none, mnist"),
    ],
)
def test_bad_settings_are_rejected(params: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(ConfigError, match=rf"techniques\.normalize\.{field}: .*{words}"):
        Normalize(**params)  # type: ignore[arg-type]


def test_statistics_of_another_channel_count_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"techniques\.normalize\.preset.*3 channel.*1, 8, 8"):
        Normalize(preset="cifar10").on_batch(torch.rand(2, 1, 8, 8), torch.zeros(2), Context())


def test_custom_statistics_round_trip_through_the_configuration(tmp_path: Path) -> None:
    settings = ["techniques.normalize.preset=custom", "techniques.normalize.mean=[0.5, 1]"]
    config = load_config(overrides=[*settings, "techniques.normalize.std=[0.25, 2]"])
    assert config.techniques["normalize"] == {
        "preset": "custom",
        "mean": (0.5, 1.0),
        "std": (0.25, 2.0),
    }
    preset = load_config(overrides=["techniques.normalize=cifar10"])
    assert preset.techniques["normalize"] == {"preset": "cifar10", "mean": (), "std": ()}
    for cfg in (config, preset):
        path = tmp_path / f"{cfg.techniques['normalize']['preset']}.yaml"
        path.write_text(to_yaml(cfg))
        assert config_hash(load_config(path)) == config_hash(cfg)


class Recorder(nn.Module):
    """Records the input of every forward pass; a linear map to two logits."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.linear = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return self.linear(x.mean(dim=(2, 3)))


def test_the_model_sees_normalised_inputs_once_in_training_and_in_evaluation() -> None:
    model = Recorder()
    technique = Normalize(preset="cifar10")
    injector = Injector([technique], seed=0)
    injector.setup(model, num_classes=2)
    x = torch.rand(4, 3, 5, 5)
    expected = technique.normalize(x)
    inputs, _ = injector.data(x, torch.zeros(4, dtype=torch.long))
    model(inputs)  # training: the DATA stage normalised, the hook leaves it
    with injector.paused():  # paused (BatchNorm recalibration): the hook normalises
        model(x)
    model.eval()  # evaluation: the hook normalises
    model(x)
    assert all(torch.equal(seen, expected) for seen in model.seen) and len(model.seen) == 3
    injector.detach()
    model(x)
    assert model.seen[-1] is x


def test_detaching_the_randomness_only_keeps_the_normalisation() -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(50, 2))
    injector = Injector.from_config({"normalize": "cifar10", "dropout": 0.5}, seed=0)
    injector.setup(model, num_classes=2)
    x = torch.rand(4, 3, 5, 5)
    injector.detach(randomness_only=True)
    normalised = Normalize(preset="cifar10").normalize(x)
    model.eval()
    kept = model(x)
    model.train()  # dropout would act on a training pass if its hook had stayed
    with injector.paused():
        assert torch.equal(model(x), kept)
    injector.detach()
    assert torch.equal(model(normalised), kept)


def test_the_trainer_evaluates_on_normalised_inputs(data_root: Path) -> None:
    """The trainer's evaluation (the model in eval() mode, no DATA stage) equals an evaluation
    of the bare network on inputs normalised by hand."""
    trainer = Trainer(
        load_config(
            overrides=[
                "data.name=digits",
                f"data.root={data_root}",
                "device=cpu",
                "model.width=8",
                "data.train_limit=128",
                "train.batch_size=32",
                "train.epochs=1",
                "techniques.normalize.preset=custom",
                "techniques.normalize.mean=[0.3]",
                "techniques.normalize.std=[0.4]",
            ]
        )
    )
    trainer.train_epoch()
    loss, accuracy = trainer.evaluate(trainer.data.test)
    trainer.injector.detach()
    trainer.model.eval()
    with torch.no_grad():
        logits = trainer.model((to_float(trainer.data.test.x) - 0.3) / 0.4)
    assert loss == pytest.approx(F.cross_entropy(logits, trainer.data.test.y).item(), rel=1e-5)
    correct = int((logits.argmax(1) == trainer.data.test.y).sum())
    assert accuracy == pytest.approx(correct / len(trainer.data.test))
