"""Options of the ``dicelab`` command line: ``--version``; configuration from several
``-c`` files, ``--set`` and bare ``KEY=VALUE`` settings; models and datasets imported from
the current folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dicelab.cli import build_parser, config_source, main
from dicelab.version import __version__


def test_version_prints_name_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``dicelab --version`` prints ``dicelab <version>`` on stdout and exits 0."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out, err = capsys.readouterr()
    assert out == f"dicelab {__version__}\n"
    assert err == ""


# -- configuration arguments -----------------------------------------------------------------


def saved_config(run: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((run / "config.yaml").read_text())
    return loaded


def test_repeated_config_files_merge_in_order(data_root: Path, tmp_path: Path) -> None:
    """``-c a.yaml -c b.yaml``: both count (the first is not dropped), the later one wins key
    by key, and --set wins over both."""
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(
        f"data:\n  name: digits\n  root: {data_root}\n  train_limit: 64\n"
        "model:\n  width: 8\noptimizer:\n  name: adam\n  lr: 0.01\ntrain:\n  epochs: 3\n"
    )
    second.write_text("optimizer:\n  lr: 0.002\ntrain:\n  epochs: 1\n  batch_size: 32\n")
    run = tmp_path / "run"
    args = ["train", "-c", str(first), "-c", str(second), "--set", "seed=5", "--device", "cpu"]
    assert main([*args, "--out", str(run), "--quiet"]) == 0
    config = saved_config(run)
    assert config["optimizer"]["name"] == "adam" and config["model"]["width"] == 8  # from a
    assert config["optimizer"]["lr"] == 0.002 and config["train"]["epochs"] == 1  # b wins
    assert config["train"]["batch_size"] == 32 and config["seed"] == 5
    assert config["data"]["train_limit"] == 64 and config["device"] == "cpu"


def test_config_source_gives_the_library_one_value(tmp_path: Path) -> None:
    """What search and the other commands pass on: None, the one file, or merged data."""
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("seed: 1\noptimizer:\n  lr: 0.1\n")
    second.write_text("optimizer:\n  name: adam\n")
    assert config_source([]) is None
    assert config_source([first]) == first
    assert config_source([first, second]) == {"seed": 1, "optimizer": {"lr": 0.1, "name": "adam"}}


def test_bare_settings_are_accepted_beside_set(data_root: Path, tmp_path: Path) -> None:
    """``dicelab train optimizer.lr=0.1`` is ``--set optimizer.lr=0.1``; both kinds apply in
    command-line order, so the last one given for a key wins."""
    args = build_parser().parse_args(["train", "--set", "seed=1", "seed=2", "train.epochs=1"])
    assert args.overrides == ["seed=1", "seed=2", "train.epochs=1"]
    args = build_parser().parse_args(["train", "seed=2", "--set", "seed=1"])
    assert args.overrides == ["seed=2", "seed=1"]
    run = tmp_path / "run"
    settings = ["data.name=digits", f"data.root={data_root}", "data.train_limit=64"]
    settings += ["model.width=8", "train.epochs=1", "device=cpu", "optimizer.lr=0.1"]
    assert main(["train", *settings, "--out", str(run), "--quiet"]) == 0
    config = saved_config(run)
    assert config["optimizer"]["lr"] == 0.1 and config["train"]["epochs"] == 1


@pytest.mark.parametrize("argument", ["digits", "=3"])
def test_a_bare_argument_that_is_not_a_setting_is_a_usage_error(
    argument: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", argument])
    assert exit_info.value.code == 2
    assert "a setting is KEY=VALUE" in capsys.readouterr().err


def test_models_and_datasets_import_from_the_current_folder(
    data_root: Path, tmp_path: Path
) -> None:
    """The console script imports ``module:function`` from where it runs, without
    PYTHONPATH, as ``python -m`` would."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "my_parts.py").write_text(
        "import torch\n"
        "from torch import nn\n\n\n"
        "def tiny(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n\n\n"
        "def blobs():\n"
        "    g = torch.Generator().manual_seed(0)\n"
        "    x = torch.randn(80, 1, 4, 4, generator=g)\n"
        "    y = torch.arange(80) % 2\n"
        "    x[y == 1] += 2\n"
        "    return x[:60], y[:60], x[60:], y[60:]\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    script = Path(sys.executable).parent / "dicelab"
    command = [str(script), "train", "model.name=my_parts:tiny", "data.name=my_parts:blobs"]
    command += ["train.epochs=1", "device=cpu", "--threads", "1", "--out", "run", "--quiet"]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout
    assert saved_config(work / "run")["model"]["name"] == "my_parts:tiny"


# -- --resume with more epochs ---------------------------------------------------------------

TIMES = {"epoch_time_s", "time_s"}


def run_args(data_root: Path, out: Path, epochs: int, *settings: str) -> list[str]:
    """A small digits run with randomness in it (dropout, label noise, shuffled batches)."""
    return [
        "train",
        "data.name=digits",
        f"data.root={data_root}",
        "data.train_limit=256",
        "model.width=8",
        "train.batch_size=32",
        "device=cpu",
        "techniques.dropout=0.2",
        "techniques.label_noise=0.1",
        f"train.epochs={epochs}",
        *settings,
        "--out",
        str(out),
        "--quiet",
    ]


def record(run: Path) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """A run's metrics without timings, its result's numbers and its final weights."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    result = json.loads((run / "result.json").read_text())
    numbers = {k: result[k] for k in ("test_acc", "test_loss", "updates", "config_hash")}
    weights = torch.load(run / "model.pt", weights_only=True)
    return [{k: v for k, v in row.items() if k not in TIMES} for row in rows], numbers, weights


def assert_same_run(a: Path, b: Path) -> None:
    rows_a, result_a, weights_a = record(a)
    rows_b, result_b, weights_b = record(b)
    assert rows_a == rows_b and result_a == result_b
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_resume_with_more_epochs_extends_a_finished_run_exactly(
    data_root: Path, tmp_path: Path
) -> None:
    """``--resume --set train.epochs=3`` on a finished 2-epoch run gives, bit for bit, the
    3-epoch run started as such: metrics, test result, config hash and final weights."""
    extended, direct = tmp_path / "extended", tmp_path / "direct"
    assert main(run_args(data_root, extended, 2)) == 0
    assert main([*run_args(data_root, extended, 3), "--resume"]) == 0
    assert main(run_args(data_root, direct, 3)) == 0
    assert_same_run(extended, direct)
    assert (extended / "config.yaml").read_bytes() == (direct / "config.yaml").read_bytes()
    before = snapshot(extended)
    assert main([*run_args(data_root, extended, 3), "--resume"]) == 0  # finished: no work
    assert snapshot(extended) == before


def test_an_interrupted_extension_resumes(data_root: Path, tmp_path: Path) -> None:
    """Killed after writing the longer run's config.yaml but before its first new epoch: the
    checkpoint still has the shorter run's hash, and --resume continues it all the same."""
    extended, direct = tmp_path / "extended", tmp_path / "direct"
    assert main(run_args(data_root, extended, 2)) == 0
    assert main(run_args(data_root, direct, 3)) == 0
    (extended / "config.yaml").write_bytes((direct / "config.yaml").read_bytes())
    assert main([*run_args(data_root, extended, 3), "--resume"]) == 0
    assert_same_run(extended, direct)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (("schedule.name=cosine",), "schedule.name=cosine"),
        (("optimizer.perturbation=rwp", "optimizer.sigma_schedule=cosine"), "sigma_schedule"),
        (("techniques.lr_schedule=0.5",), "lr_schedule technique"),
        (("techniques.batch_schedule=0.5",), "batch_schedule technique"),
    ],
)
def test_an_extension_that_cannot_be_exact_is_refused(
    settings: tuple[str, ...],
    words: str,
    data_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Where the schedule spreads over the planned length, one line says why; the run
    folder is left as it was."""
    run = tmp_path / "run"
    assert main(run_args(data_root, run, 1, *settings, "data.train_limit=64")) == 0
    before = snapshot(run)
    capsys.readouterr()
    code = main([*run_args(data_root, run, 2, *settings, "data.train_limit=64"), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "cannot continue" in err and words in err and "--out" in err
    assert snapshot(run) == before


def test_fewer_epochs_than_trained_are_refused(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main(run_args(data_root, run, 2, "data.train_limit=64")) == 0
    before = snapshot(run)
    capsys.readouterr()
    assert main([*run_args(data_root, run, 1, "data.train_limit=64"), "--resume"]) == 2
    assert "already trained 2 epochs" in capsys.readouterr().err
    assert snapshot(run) == before


def test_another_change_than_epochs_is_still_refused(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main(run_args(data_root, run, 1, "data.train_limit=64")) == 0
    capsys.readouterr()
    resumed = [*run_args(data_root, run, 2, "data.train_limit=64", "seed=7"), "--resume"]
    assert main(resumed) == 2
    assert "different configuration" in capsys.readouterr().err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
