"""The run configuration: defaults, YAML, overrides, and the messages for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dicelab.config import (
    RunConfig,
    apply_overrides,
    config_hash,
    describe_fields,
    from_dict,
    load_config,
    merge,
    to_dict,
    to_yaml,
)
from dicelab.exceptions import ConfigError, UnknownNameError


def test_defaults_are_the_documented_ones() -> None:
    config = load_config()
    assert config.data.name == "digits"
    assert config.model.name == "vgg"
    assert config.optimizer.name == "sgd" and config.optimizer.lr == 1e-3
    assert config.train.batch_size == 128 and config.train.reduction == "sum"
    assert config.techniques == {}


def test_yaml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("seed: 3\noptimizer:\n  name: adam\n  lr: 1e-2\nmodel:\n  blocks: 2\n")
    config = load_config(path, ["optimizer.lr=0.5", "train.epochs=2"])
    assert config.seed == 3
    assert config.optimizer.name == "adam"
    assert config.optimizer.lr == 0.5  # the override wins over the file
    assert config.train.epochs == 2
    assert config.model.options == {"blocks": 2, "width": 32, "dense": 128}  # defaults filled


def test_yaml_scientific_notation_is_a_float() -> None:
    # PyYAML reads "1e-3" as a string; a float field must still take it.
    assert load_config(overrides=["optimizer.lr=1e-4"]).optimizer.lr == 1e-4


def test_resolved_config_round_trips() -> None:
    config = load_config(overrides=["model.width=16", "seed=7"])
    again = from_dict(yaml.safe_load(to_yaml(config)))
    assert again == config
    assert config_hash(again) == config_hash(config)
    assert to_dict(config)["model"]["width"] == 16


def test_training_options_default_to_off() -> None:
    """No schedule, no Nesterov, decay on every parameter, no clipping: the runs of before."""
    config = load_config()
    assert config.schedule.name == "constant" and config.schedule.warmup == 0
    assert config.optimizer.nesterov is False and config.optimizer.clip_grad_norm is None
    assert config.optimizer.decay_exclude == []


def test_a_list_value_round_trips_and_its_order_does_not_matter(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("optimizer:\n  decay_exclude: [norm, bias]\nschedule: {milestones: [3, 9]}\n")
    config = load_config(path)
    assert config.optimizer.decay_exclude == ["bias", "norm"]
    assert config.schedule.milestones == [3, 9]
    again = from_dict(yaml.safe_load(to_yaml(config)))
    assert again == config
    same = load_config(
        overrides=["optimizer.decay_exclude=[bias, norm]", "schedule.milestones=[3, 9]"]
    )
    assert config_hash(same) == config_hash(config)
    assert RunConfig().optimizer.decay_exclude is not RunConfig().optimizer.decay_exclude


def test_hash_changes_with_any_value() -> None:
    base = config_hash(RunConfig())
    assert config_hash(load_config(overrides=["seed=1"])) != base
    assert config_hash(load_config(overrides=["model.blocks=2"])) != base


@pytest.mark.parametrize(
    ("override", "field", "words"),
    [
        ("optimizer.lr=-1", "optimizer.lr", "must be > 0"),
        ("optimizer.lr=fast", "optimizer.lr", "must be a number"),
        ("train.epochs=1.5", "train.epochs", "integer"),
        ("train.epochs=0", "train.epochs", ">= 1"),
        ("data.val_fraction=1", "data.val_fraction", "(0, 1)"),
        ("train.recalibrate_bn=maybe", "train.recalibrate_bn", "must be true, false or auto"),
        ("train.recalibrate_bn=1", "train.recalibrate_bn", "must be true, false or auto"),
        ("device=gpu", "device", "cpu"),
        ("seed=-2", "seed", ">= 0"),
        ("optimizer.nesterov=2", "optimizer.nesterov", "must be true or false"),
        ("optimizer.clip_grad_norm=0", "optimizer.clip_grad_norm", "must be > 0"),
        ("optimizer.decay_exclude=bias", "optimizer.decay_exclude", "must be a list"),
        ("optimizer.decay_exclude=[bias, nrom]", "optimizer.decay_exclude[1]", "'norm'?"),
        ("optimizer.decay_exclude=[norm, norm]", "optimizer.decay_exclude", "not repeat"),
    ],
)
def test_bad_values_name_field_value_and_rule(override: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    message = str(info.value)
    assert info.value.field == field
    assert message.startswith(f"{field}: got ")
    assert words in message


@pytest.mark.parametrize(("raw", "value"), [("auto", "auto"), ("true", True), ("false", False)])
def test_recalibrate_bn_takes_true_false_or_auto(raw: str, value: object) -> None:
    """``auto`` is the default; YAML's true and false stay booleans."""
    assert RunConfig().train.recalibrate_bn == "auto"
    got = load_config(overrides=[f"train.recalibrate_bn={raw}"]).train.recalibrate_bn
    assert got == value and type(got) is type(value)


def test_recalibrate_bn_refuses_other_values_with_one_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["train.recalibrate_bn=maybe"])
    assert type(info.value) is ConfigError  # no "did you mean" list for true/false/auto
    assert str(info.value) == "train.recalibrate_bn: got 'maybe'; must be true, false or auto."


def test_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(UnknownNameError) as info:
        load_config(overrides=["optimizer.momentm=0.5"])
    assert "optimizer.momentm" in str(info.value)
    assert "Did you mean 'momentum'?" in str(info.value)


def test_unknown_choice_suggests_the_close_one() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'adam'"):
        load_config(overrides=["optimizer.name=adma"])


def test_unknown_section_and_unknown_technique() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'train'"):
        from_dict({"trian": {"epochs": 1}})
    with pytest.raises(UnknownNameError, match="technique"):
        load_config(overrides=["techniques.gradiant_noise.eta=0.1"])


@pytest.mark.parametrize("bad", ["seed", "=3", "a..b=1"])
def test_malformed_override(bad: str) -> None:
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, [bad])


def test_override_cannot_descend_into_a_value() -> None:
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({}, ["seed=1", "seed.x=2"])


def test_malformed_or_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listing)


def test_every_field_is_documented() -> None:
    rows = describe_fields()
    assert {key for key, _, _ in rows} >= {"seed", "optimizer.lr", "train.reduction"}
    assert all(doc for _, _, doc in rows)


def test_several_files_merge_in_order(tmp_path: Path) -> None:
    """Files are merged section by section, a later file winning key by key; overrides last."""
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(
        "seed: 3\noptimizer:\n  name: adam\n  lr: 0.01\ntrain:\n  epochs: 4\n"
        "techniques:\n  dropout: 0.2\n"
    )
    second.write_text("optimizer:\n  lr: 0.05\ntechniques:\n  label_smoothing: 0.1\n")
    config = load_config([first, second], ["train.epochs=2"])
    assert config.seed == 3 and config.optimizer.name == "adam"  # kept from the first file
    assert config.optimizer.lr == 0.05  # the second file wins
    assert config.train.epochs == 2  # the override wins over both
    assert set(config.techniques) == {"dropout", "label_smoothing"}
    assert load_config([second, first]).optimizer.lr == 0.01  # order matters
    assert config_hash(load_config([first])) == config_hash(load_config(first))


def test_merge_replaces_values_and_lists_and_leaves_inputs_alone() -> None:
    base = {"optimizer": {"decay_exclude": ["bias"], "lr": 0.1}, "techniques": {"dropout": 0.2}}
    over = {"optimizer": {"decay_exclude": ["norm"]}, "techniques": {"dropout": {"p": 0.3}}}
    merged = merge(base, over)
    assert merged == {
        "optimizer": {"decay_exclude": ["norm"], "lr": 0.1},
        "techniques": {"dropout": {"p": 0.3}},
    }
    assert base["optimizer"] == {"decay_exclude": ["bias"], "lr": 0.1}
    merged["techniques"]["dropout"]["p"] = 0.9
    assert over["techniques"] == {"dropout": {"p": 0.3}}


def test_a_missing_file_among_several_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("seed: 1\n")
    with pytest.raises(ConfigError, match="b.yaml.*no such file"):
        load_config([tmp_path / "a.yaml", tmp_path / "b.yaml"])
