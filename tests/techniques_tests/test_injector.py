"""The Injector and the technique section of the configuration."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

from dicelab.config import config_hash, load_config, to_yaml
from dicelab.exceptions import ConfigError, UnknownNameError
from dicelab.techniques import Injector, create_technique, list_techniques
from dicelab.train import Trainer

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "data.name=digits",
    "device=cpu",
    "model.width=8",
    "data.train_limit=256",
    "train.batch_size=32",
    "train.epochs=2",
]


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_all_techniques_at_default_reproduce_the_plain_trainer(data_root: Path) -> None:
    every_default = [
        f"techniques.{cls.name}.{cls.strength}={_yaml(cls().hyperparameters()[cls.strength])}"
        for cls in list_techniques()
    ]
    plain = Trainer(load_config(overrides=[*SMALL, f"data.root={data_root}"]))
    spelled = Trainer(load_config(overrides=[*SMALL, f"data.root={data_root}", *every_default]))
    assert spelled.config.techniques == {}  # off techniques are dropped when resolving
    plain.fit()
    spelled.fit()
    first, second = _weights(plain), _weights(spelled)
    assert all(torch.equal(first[k], second[k]) for k in first)


def _yaml(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_techniques_on_are_resolved_with_every_hyperparameter() -> None:
    config = load_config(overrides=["techniques.dropout=0.2", "techniques.gradient_noise.eta=0.1"])
    assert config.techniques["dropout"] == {"p": 0.2}
    assert config.techniques["gradient_noise"] == {"eta": 0.1, "gamma": 0.55}
    again = load_config(
        overrides=["techniques.gradient_noise.eta=0.1", "techniques.dropout.p=0.2"]
    )
    assert config_hash(again) == config_hash(config)
    assert "gradient_noise:" in to_yaml(config)


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("techniques.dropuot.p=0.1", "Did you mean 'dropout'"),
        ("techniques.dropout.q=0.1", "techniques.dropout.q"),
        ("techniques.dropout.p=1.5", "techniques.dropout.p: got 1.5"),
        ("techniques.gradient_noise.eta=much", "must be a number"),
        ("techniques.weight_noise.eta=-1", "must lie in"),
    ],
)
def test_bad_technique_settings_are_rejected_at_configuration_time(
    override: str, words: str
) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        load_config(overrides=[override])


def test_unknown_technique_is_an_unknown_name() -> None:
    with pytest.raises(UnknownNameError):
        create_technique("gradiant_noise", 0.1)


def test_each_technique_may_appear_once() -> None:
    with pytest.raises(ValueError, match="once"):
        Injector([create_technique("dropout", 0.1), create_technique("dropout", 0.2)])


def test_grad_stage_order_is_the_authors() -> None:
    injector = Injector.from_config(
        {"gradient_noise": 0.1, "frozen_weights": 0.5, "gradient_dropout": 0.2}
    )
    assert [t.name for t in injector._by_hook["on_grads"]] == [
        "gradient_dropout",
        "frozen_weights",
        "gradient_noise",
    ]


def test_trainer_with_techniques_resumes_exactly(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Technique state (frozen masks, label-noise table, step counters, streams) is in the
    checkpoint: a run interrupted after epoch 2 and resumed ends with the weights of an
    uninterrupted one."""
    on = [
        "techniques.shuffle=true",
        "techniques.rotation=0.1",
        "techniques.dropout=0.2",
        "techniques.frozen_weights=0.3",
        "techniques.gradient_noise=0.01",
        "techniques.label_noise=0.1",
        "techniques.loss_noise=0.3",
        "techniques.lr_schedule=0.5",
        "train.epochs=4",
    ]
    config = load_config(overrides=[*SMALL, f"data.root={data_root}", *on])
    whole = Trainer(config, run_dir=tmp_path / "whole")
    whole.fit()

    real_epoch = Trainer.train_epoch
    calls = {"n": 0}

    def interrupted(self: Trainer, bar: object = None) -> dict[str, float] | None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_epoch(self, bar)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            Trainer(config, run_dir=tmp_path / "part").fit()
    resumed = Trainer(config, run_dir=tmp_path / "part")
    resumed.fit(resume=True)
    first, second = _weights(whole), _weights(resumed)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_the_readme_custom_loop_example_runs() -> None:
    namespace = runpy.run_path(str(ROOT / "examples" / "custom_loop.py"))
    with torch.random.fork_rng():  # the example seeds its own (global) model initialisation
        accuracy = namespace["main"](epochs=3)
    assert 0.7 < accuracy <= 1.0


def test_a_techniques_draws_do_not_depend_on_which_others_are_on() -> None:
    """Rotation's augmented batches are identical whether or not other techniques (that draw
    before it in the same stage, or at other stages) are on."""
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(32, 1, 12, 12, generator=gen)
    y = torch.randint(0, 10, (32,), generator=gen)

    def rotated(others: dict[str, object]) -> list[torch.Tensor]:
        injector = Injector.from_config({"rotation": 0.2, **others}, seed=7)
        injector.setup(torch.nn.Linear(144, 10), num_classes=10, train_size=32, epochs=2)
        outputs = []
        for _ in range(3):
            rotation = next(t for t in injector.active if t.name == "rotation")
            out, _ = rotation.on_batch(x, y, injector.ctx)  # rotation's own next draw
            injector.data(x, y, torch.arange(32))  # every technique draws for the step
            outputs.append(out)
        return outputs

    alone = rotated({})
    crowded = rotated(
        {
            "flip": "horizontal",
            "translation": 0.1,
            "label_noise": 0.2,
            "input_noise": 0.1,
            "dropout": 0.3,
        }
    )
    assert all(torch.equal(a, b) for a, b in zip(alone, crowded, strict=True))


@pytest.mark.parametrize("name", ["flip", "rotation", "zoom", "translation", "contrast"])
def test_image_techniques_are_rejected_for_signals_before_training(name: str) -> None:
    injector = Injector([create_technique(name, "horizontal" if name == "flip" else 0.1)])
    with pytest.raises(ConfigError, match=f"techniques.{name}: .*images"):
        injector.setup(torch.nn.Linear(40, 10), num_classes=10, input_shape=(1, 40))


def test_cli_rejects_an_image_technique_on_mnist1d_without_writing(tmp_path: Path) -> None:
    from dicelab.cli import main

    run = tmp_path / "run"
    code = main(
        [
            "train",
            "--quiet",
            "--out",
            str(run),
            "--set",
            "data.name=mnist1d",
            "--set",
            "model.name=cnn1d",
            "--set",
            "techniques.zoom=0.1",
            "--set",
            f"data.root={tmp_path / 'data'}",
        ]
    )
    assert code == 2
    assert not run.exists()
