"""Bad input gives one clear message and exit code 2, never a traceback or a useless run:
non-finite numbers in every float field, and YAML that is not plain configuration data."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest

from dicelab.cli import main
from dicelab.config import RunConfig, describe_fields, load_config
from dicelab.exceptions import ConfigError
from dicelab.space import HParam, hparams
from dicelab.techniques import list_techniques

NON_FINITE = {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}

#: The tiny training run of the CLI tests (the brief's ``$B``).
SMALL = ("data.name=digits", "train.epochs=2", "model.width=8", "device=cpu")


def _annotation(key: str) -> Any:
    """The type annotation of the dotted configuration key ``key``."""
    cls: Any = RunConfig
    *sections, name = key.split(".")
    for section in sections:
        cls = get_type_hints(cls)[section]
    return get_type_hints(cls)[name]


def float_config_fields() -> list[str]:
    """Every configuration key whose value is a float (or an optional float)."""
    keys = []
    for key, _default, _doc in describe_fields():
        tp = _annotation(key)
        if tp is float or float in get_args(tp):
            keys.append(key)
    return keys


def float_technique_fields() -> list[str]:
    """``techniques.<name>.<hyperparameter>`` for every float hyperparameter."""
    return [
        f"techniques.{cls.name}.{field}"
        for cls in list_techniques()
        for field, spec in hparams(cls).items()
        if spec.choices is None and type(spec.default) is float
    ]


def test_the_enumeration_finds_the_known_float_fields() -> None:
    config_keys, technique_keys = float_config_fields(), float_technique_fields()
    assert {"optimizer.lr", "optimizer.rho", "data.val_fraction"} <= set(config_keys)
    assert {"techniques.rotation.factor", "techniques.lr_schedule.s"} <= set(technique_keys)
    assert {"techniques.dropout.p", "techniques.frozen_weights.p"} <= set(technique_keys)
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    assert all(key.split(".")[0] in fields for key in config_keys)


@pytest.mark.parametrize("written", NON_FINITE.values(), ids=NON_FINITE.keys())
@pytest.mark.parametrize("key", float_config_fields() + float_technique_fields())
def test_non_finite_numbers_are_refused(key: str, written: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[f"{key}={written}"])
    assert info.value.field == key
    assert str(info.value).startswith(f"{key}: got ")
    assert "must be a finite number" in str(info.value)


@pytest.mark.parametrize("written", ["nan", "inf", "-Infinity", "1" + "0" * 400])
def test_non_finite_numbers_written_as_text_are_refused(written: str) -> None:
    with pytest.raises(ConfigError, match="optimizer.lr: got .*must be a finite number"):
        load_config(overrides=[f"optimizer.lr={written}"])


def test_the_message_says_the_range_too() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["techniques.rotation=.nan"])
    assert str(info.value) == (
        "techniques.rotation.factor: got nan; must be a finite number, and lie in [0, 1]."
    )
    with pytest.raises(ConfigError, match=r"finite number, and be > 0"):
        load_config(overrides=["optimizer.lr=.inf"])


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_hparam_problem_refuses_non_finite_values(value: float) -> None:
    assert HParam(0.0, valid=(0.0, 1.0)).problem(value) is not None
    assert HParam(0.0, valid=(0.0, None)).problem(value) is not None
    assert HParam(0.0).problem(value) == "must be a finite number"


def test_finite_values_are_still_accepted() -> None:
    config = load_config(overrides=["optimizer.lr=1e-2", "techniques.rotation=0.5"])
    assert config.optimizer.lr == 0.01 and config.techniques["rotation"]["factor"] == 0.5


# -- the command line: exit 2, one line on stderr, no traceback, no run folder ------------------


def run_cli(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *settings: str,
    config: Path | None = None,
    base: tuple[str, ...] = SMALL,
) -> tuple[int, str, Path]:
    """``dicelab train`` with the tiny ``base`` settings, ``settings`` and a config file;
    returns the exit code, stderr and the run folder it was given."""
    out = tmp_path / "run"
    args = ["train", "--quiet", "--out", str(out)]
    if config is not None:
        args += ["-c", str(config)]
    for setting in (*base, f"data.root={tmp_path / 'data'}", *settings):
        args += ["--set", setting]
    code = main(args)
    return code, capsys.readouterr().err, out


def assert_one_line_error(code: int, err: str, out: Path, *words: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("dicelab train: error: ")
    assert "Traceback" not in err
    assert not out.exists()
    for word in words:
        assert word in err


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("techniques.rotation=.nan", "techniques.rotation.factor"),
        ("techniques.label_noise=.nan", "techniques.label_noise.p"),
        ("techniques.lr_schedule=.nan", "techniques.lr_schedule.s"),
        ("techniques.batch_schedule=.nan", "techniques.batch_schedule.s"),
        ("techniques.dropout=.nan", "techniques.dropout.p"),
        ("optimizer.lr=.inf", "optimizer.lr"),
        ("optimizer.weight_decay=.inf", "optimizer.weight_decay"),
    ],
)
def test_cli_refuses_non_finite_numbers(
    setting: str, field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, out = run_cli(tmp_path, capsys, setting)
    assert_one_line_error(code, err, out, field, "finite")


# -- YAML that is not plain configuration data ---------------------------------------------------

BAD_YAML: dict[str, tuple[bytes, str]] = {
    "not-utf8": (b"seed: 1\noptimizer:\n  name: \xff\xfeadam\n", "UTF-8"),
    "latin1": ("model:\n  name: vgg # café\n".encode("latin-1"), "UTF-8"),
    "alias-list": (b"seed: 1\na: &x [*x]\n", "contains it"),
    "alias-mapping": (b"model: &m\n  name: vgg\n  inner: *m\n", "contains it"),
    "date": (b"seed: 2024-01-31\n", "a date"),
    "timestamp": (b"data:\n  name: 2024-01-31 10:00:00\n", "a timestamp"),
    "set": (b"techniques: !!set {dropout, shuffle}\n", "a set"),
    "binary": (b"data:\n  name: !!binary aGVsbG8=\n", "binary data"),
    "alias-bomb": (
        b"a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + b"".join(
            f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n".encode()
            for p, n in zip("abcde", "bcdef", strict=True)
        ),
        "too large",
    ),
    "deep": (b"a: " + b"[" * 3000 + b"]" * 3000 + b"\n", "nested too deeply"),
}


@pytest.mark.parametrize("case", BAD_YAML)
def test_cli_bad_yaml_file(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content, words = BAD_YAML[case]
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    code, err, out = run_cli(tmp_path, capsys, config=path)
    assert_one_line_error(code, err, out, words)


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("seed=2024-01-31", "seed: got datetime.date"),
        ("model.note=2024-01-31", "model.note: got datetime.date"),
        ("techniques=&x [*x]", "contains it"),
        ("techniques=!!set {dropout}", "a set"),
    ],
)
def test_cli_bad_yaml_in_set(
    setting: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, out = run_cli(tmp_path, capsys, setting)
    assert_one_line_error(code, err, out, words)


def test_quoted_date_is_text(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  root: '2024-01-31'\n")
    assert load_config(path).data.root == "2024-01-31"


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    """The installed ``dicelab`` command itself, in a fresh process."""
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"a: &x [*x]\n")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dicelab")), "train", "-c", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


# -- custom datasets and models (``module:function``) through the command line -----------------

USER_CODE = """
import torch
from torch import nn


def _data(x_test=None):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=g)
    y = torch.arange(64) % 10
    return x, y, x[:20] if x_test is None else x_test, y[:20]


def nan_test():
    return _data(torch.full((20, 1, 8, 8), float("nan")))


def nan_train():
    x, y, xt, yt = _data()
    x = x.clone()
    x[0, 0, 0, 0] = float("nan")
    return x, y, xt, yt


def million_classes():
    x, y, xt, yt = _data()
    return x, y * 100_000, xt, yt


def huge_label():
    x, y, xt, yt = _data()
    y = y.clone()
    y[0] = 2**40  # a model of 2**40 + 1 classes would need 5.6e14 bytes
    return x, y, xt, yt


def raises():
    raise FileNotFoundError("/data/missing.csv")


def wrong_outputs(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 7))


def no_parameters(input_shape, num_classes):
    return nn.Flatten()


def broken_forward(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(10, num_classes))


def raises_when_built(input_shape, num_classes):
    raise ValueError("unsupported input shape")
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of user datasets and models, importable for this test."""
    name = f"dicelab_fault_user_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("data.name=sys:exit", ("data.name", "'sys:exit'", "exited")),
        ("data.name={m}:raises", ("data.name", "raised FileNotFoundError", "missing.csv")),
        ("data.name={m}:nan_test", ("{m}:nan_test", "test split has 1280 non-finite")),
        ("data.name={m}:nan_train", ("{m}:nan_train", "train split has 1 non-finite")),
        ("data.name={m}:million_classes", ("data.name", "900001 classes", "Remap")),
        ("data.name={m}:huge_label", ("data.name", "Remap")),
    ],
)
def test_cli_bad_custom_dataset(
    setting: str,
    words: tuple[str, ...],
    user_module: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err, out = run_cli(tmp_path, capsys, setting.format(m=user_module))
    assert_one_line_error(code, err, out, *(w.format(m=user_module) for w in words))


@pytest.mark.parametrize(
    ("function", "words"),
    [
        ("wrong_outputs", "shape (1, 7); expected (N, 10)"),
        ("no_parameters", "trainable parameters; it has none"),
        ("broken_forward", "first forward pass"),
        ("raises_when_built", "raised ValueError: unsupported input shape"),
    ],
)
def test_cli_bad_custom_model(
    function: str,
    words: str,
    user_module: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = tuple(s for s in SMALL if not s.startswith("model."))  # no VGG options
    code, err, out = run_cli(tmp_path, capsys, f"model.name={user_module}:{function}", base=base)
    assert_one_line_error(code, err, out, "model.name", f"{user_module}:{function}", words)


def test_a_search_with_a_model_that_raises_is_one_line(
    user_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: the search crashed at its summary (NaN best) with a traceback."""
    args = ["search", "--out", str(tmp_path / "s"), "--sampler", "random", "--trials", "2"]
    base = tuple(s for s in SMALL if not s.startswith("model."))
    for setting in (*base, f"data.root={tmp_path / 'data'}"):
        args += ["--set", setting]
    args += ["--set", f"model.name={user_module}:raises_when_built", "--genes", "dropout"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("dicelab search: error: model.name")
    assert "raised ValueError: unsupported input shape" in err
