"""The ``dicelab`` command line: training, exit codes, one-line error messages and listings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dicelab.cli import main
from dicelab.config import config_hash, load_config
from dicelab.data import list_datasets
from dicelab.models import list_models

SMALL = (
    "data.name=digits",
    "device=cpu",
    "model.width=8",
    "data.train_limit=256",
    "train.batch_size=32",
    "train.epochs=2",
)


def sets(*settings: str) -> list[str]:
    """``--set`` arguments for each setting."""
    return [arg for setting in settings for arg in ("--set", setting)]


def train_args(data_root: Path, *settings: str) -> list[str]:
    """``train`` with the small digits configuration, then ``settings``."""
    return ["train", *sets(*SMALL, f"data.root={data_root}", *settings)]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- train ----------------------------------------------------------------------------------


def test_train_succeeds_quietly(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A good run exits 0 and prints one summary line with the test accuracy on stdout and,
    with --quiet, nothing on stderr."""
    run = tmp_path / "run"
    code = main([*train_args(data_root), "--out", str(run), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 1
    result = json.loads((run / "result.json").read_text())
    assert f"test accuracy {result['test_acc']:.4f}" in lines[0]
    assert f"last val accuracy {result['last_val_acc']:.4f}" in lines[0]
    assert str(run) in lines[0]


def test_train_logs_epochs_on_stderr(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --quiet (and no terminal) every epoch is logged as one line on stderr, while
    stdout keeps only the summary."""
    code = main([*train_args(data_root), "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code == 0
    epoch_lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/2", "2/2"]
    assert "val_acc" in epoch_lines[0]
    assert len(out.splitlines()) == 1 and "test accuracy" in out


def test_device_flag_overrides_configuration(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--device cpu`` replaces the default ``auto`` in the recorded configuration."""
    settings = [s for s in SMALL if not s.startswith("device=")]
    run = tmp_path / "run"
    argv = ["train", *sets(*settings, f"data.root={data_root}"), "--device", "cpu"]
    assert main([*argv, "--out", str(run), "--quiet"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["device"] == "cpu"


def test_default_run_folder_is_named_after_the_run(
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --out the run goes to runs/<data>-<model>-s<seed>-<hash prefix> in the working
    folder."""
    monkeypatch.chdir(tmp_path)
    settings = [*SMALL, f"data.root={data_root}", "seed=3"]
    assert main(["train", *sets(*settings), "--quiet"]) == 0
    digest = config_hash(load_config(None, settings))
    run = tmp_path / "runs" / f"digits-vgg-s3-{digest[:8]}"
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run.name]
    assert json.loads((run / "result.json").read_text())["config_hash"] == digest


def test_existing_run_folder_is_refused(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Training again into a folder that holds a run exits 2 with a message about --resume
    and leaves the folder as it was."""
    run = tmp_path / "run"
    argv = [*train_args(data_root), "--out", str(run), "--quiet"]
    assert main(argv) == 0
    before = snapshot(run)
    capsys.readouterr()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "--resume" in err and "Traceback" not in err
    assert snapshot(run) == before


def test_resume_of_finished_run_succeeds(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--resume`` on a completed run trains nothing more and reports the same result."""
    run = tmp_path / "run"
    argv = [*train_args(data_root), "--out", str(run), "--quiet"]
    assert main(argv) == 0
    first = json.loads((run / "result.json").read_text())
    weights = (run / "model.pt").read_bytes()
    assert main([*argv, "--resume"]) == 0
    again = json.loads((run / "result.json").read_text())
    assert (again["test_acc"], again["updates"]) == (first["test_acc"], first["updates"])
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert (run / "model.pt").read_bytes() == weights


def test_diverged_run_exits_1(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run whose loss overflows exits 1, says so on stderr and keeps its result."""
    run = tmp_path / "run"
    argv = train_args(data_root, "optimizer.lr=1e6", "train.batch_size=128", "train.epochs=3")
    code = main([*argv, "--out", str(run), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert "diverged" in err and str(run) in err and "Traceback" not in err
    assert json.loads((run / "result.json").read_text())["status"] == "diverged"


# -- user errors ----------------------------------------------------------------------------

BAD_INPUT = {
    "unknown_dataset": (["--set", "data.name=mnsit"], ["data.name", "Did you mean 'mnist'"]),
    "unknown_key": (["--set", "train.epocs=3"], ["train.epocs", "Did you mean 'epochs'"]),
    "bad_value": (["--set", "optimizer.lr=-1"], ["optimizer.lr", "-1", "> 0"]),
    "malformed_set": (["--set", "seed"], ["--set", "'seed'", "key=value"]),
    "missing_config": (["-c", "{tmp}/missing.yaml"], ["missing.yaml", "no such file"]),
    "no_dataset_files": (
        ["--set", "data.name=cifar10", "--set", "data.root={tmp}/empty"],
        ["cifar-10-binary.tar.gz", "data.download"],
    ),
    "unknown_model_option": (["--set", "model.blocs=2"], ["model.blocs", "Did you mean 'blocks'"]),
    "zero_threads": (["--threads", "0"], ["--threads", "0", ">= 1"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_train_input_exits_2_with_one_message(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each user mistake exits 2 with a single error line on stderr that names the problem,
    no traceback, and no run folder."""
    (tmp_path / "empty").mkdir()
    args, expected = BAD_INPUT[case]
    args = [arg.format(tmp=tmp_path) for arg in args]
    run = tmp_path / "run"
    code = main(["train", *args, "--set", "device=cpu", "--out", str(run), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("dicelab train: error: ")
    for text in expected:
        assert text in err
    assert not run.exists()


def test_unknown_listing_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """``dicelab list foo`` exits 2 naming what can be listed."""
    assert main(["list", "foo"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("dicelab list: error: ")
    assert "'foo'" in err and "datasets" in err and "models" in err


def test_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """No command at all is an argparse usage error with exit status 2."""
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: dicelab" in capsys.readouterr().err


def test_console_script_reports_bad_value_without_traceback(tmp_path: Path) -> None:
    """``python -m dicelab`` exits 2 on a bad value with the message and no traceback."""
    completed = subprocess.run(
        [sys.executable, "-m", "dicelab", "train", "--set", "optimizer.lr=-1", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert "Traceback" not in completed.stderr
    assert "optimizer.lr" in completed.stderr and "-1" in completed.stderr
    assert not (tmp_path / "runs").exists()


# -- list -----------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["datasets", "models"])
def test_list_prints_every_registered_name(what: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``dicelab list datasets|models`` prints one line per registered name, in order."""
    names = [info.name for info in (list_datasets() if what == "datasets" else list_models())]
    assert names
    assert main(["list", what]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert [line.split()[0] for line in out.splitlines()] == names


def test_list_techniques_and_space(capsys: pytest.CaptureFixture[str]) -> None:
    """`dicelab list techniques` shows every registered technique with its category, and
    `dicelab list space` the paper's 22 genes."""
    from dicelab.paper_space import GENES
    from dicelab.techniques import list_techniques

    assert main(["list", "techniques"]) == 0
    out = capsys.readouterr().out
    for cls in list_techniques():
        assert f"{cls.name:<18} {cls.category.value}" in out
    assert main(["list", "space"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + len(GENES)
    assert "weight_noise" in lines[20] and "x >= 6 is off" in lines[20]


def test_a_reader_that_goes_away_is_not_an_error() -> None:
    """`dicelab list space | head -1`: when the reader closes the pipe first, the command
    exits quietly (it printed "error: a file: Broken pipe" before)."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "dicelab", "list", "space"], stdout=write, stderr=subprocess.PIPE
    )
    os.close(write)
    os.close(read)  # gone before the command (still importing) writes anything
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0 and err == b"", err
