"""Run folders: the exclusive claim of a run, stale temporary files of killed writers, damaged
checkpoints, write errors, and the inputs besides the configuration recorded in result.json."""

from __future__ import annotations

import errno
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from dicelab import _atomic
from dicelab.config import RunConfig
from dicelab.exceptions import RunError
from dicelab.train import Trainer
from dicelab.train.rundir import LOCK, claim_run_dir
from dicelab.train.trainer import CHECKPOINT, FINAL_WEIGHTS, RESULT, RunResult, finished_result

from .test_trainer import assert_same_weights, load_tensors, snapshot

MakeConfig = Callable[..., RunConfig]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# -- the claim ------------------------------------------------------------------------------


def test_claim_is_exclusive_names_its_owner_and_is_released(tmp_path: Path) -> None:
    """A claimed folder refuses a second claim (even from another descriptor of this process)
    with the owner's pid; after release it can be claimed again and no lock file remains."""
    folder = tmp_path / "new" / "run"
    claim = claim_run_dir(folder)  # creates the folder
    assert folder.is_dir()
    with pytest.raises(
        RunError, match=rf"in use by another dicelab process \(pid {os.getpid()}\)"
    ):
        claim_run_dir(folder)
    claim.release()
    assert not (folder / LOCK).exists()
    with claim_run_dir(folder) as again:
        assert again.held
    assert not again.held
    assert list(folder.iterdir()) == []


def test_claim_of_a_killed_owner_is_free(tmp_path: Path) -> None:
    """The kernel drops the lock of a process killed with SIGKILL: its lock file stays, but
    the folder can be claimed at once."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from dicelab.train.rundir import claim_run_dir; "
            "claim_run_dir(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match=rf"pid {holder.pid}\)"):
            claim_run_dir(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (tmp_path / LOCK).exists()  # left by the killed process
    with claim_run_dir(tmp_path) as claim:
        assert claim.held


def test_fit_refuses_a_folder_in_use_and_writes_nothing(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """fit on a folder another run holds raises one RunError and leaves the folder as it was,
    for a new run and for a resume; the claim of a fit is released when it returns or fails."""
    config = make_config("train.epochs=1")
    run = tmp_path / "run"
    Trainer(config, run_dir=run).fit()
    before = snapshot(run)
    with claim_run_dir(run):
        for resume in (False, True):
            with pytest.raises(RunError, match="in use by another dicelab process"):
                Trainer(config, run_dir=run).fit(resume=resume)
    assert snapshot(run) == before
    with pytest.raises(RunError, match="already holds a run"):
        Trainer(config, run_dir=run).fit()
    assert not (run / LOCK).exists()
    assert Trainer(config, run_dir=run).fit(resume=True).status == "completed"
    assert not (run / LOCK).exists()


# -- stale temporary files ------------------------------------------------------------------


def test_only_temporary_files_of_dead_writers_on_this_host_are_removed(tmp_path: Path) -> None:
    """remove_stale_temps removes the temporary files of dead writers (old and new names) and
    keeps those of live processes, of other hosts, and every other file."""
    dead, host = dead_pid(), _atomic._host()
    stale = [
        f".checkpoint.pt.{dead}@{host}.0123abcd.tmp",
        f".metrics.jsonl.{dead}.89abcdef.tmp",  # a name written before hosts were recorded
    ]
    kept = [
        f".checkpoint.pt.{os.getpid()}@{host}.0123abcd.tmp",  # this live process
        f".checkpoint.pt.{os.getppid()}@{host}.0123abcd.tmp",  # another live process
        f".checkpoint.pt.{dead}@other-host.0123abcd.tmp",  # cannot tell: another machine
        "checkpoint.pt",
        "notes.tmp",
        f".x.{dead}.nothex!!.tmp",
    ]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    removed = _atomic.remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_atomic_temporary_names_carry_pid_and_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write's temporary file is named after the writer's pid and host (what the cleanup
    reads), and a failed write names the target, not the temporary file."""
    seen: list[str] = []
    real_replace = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        seen.append(Path(src).name)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError) as caught:
        _atomic.write_text(tmp_path / "a.txt", "hello")
    monkeypatch.setattr(os, "replace", real_replace)
    assert caught.value.filename == str(tmp_path / "a.txt")
    assert _atomic._TEMP.match(seen[0])
    assert f".a.txt.{os.getpid()}@{_atomic._host()}." in seen[0]
    assert list(tmp_path.iterdir()) == []  # the temporary file went with the failure


def test_resume_removes_temporary_files_of_a_killed_writer(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """A checkpoint write killed before its rename leaves a temporary file; claiming the
    folder to resume removes it, and the run still ends like an uninterrupted one."""
    config = make_config()
    Trainer(config, run_dir=tmp_path / "a").fit()
    run = tmp_path / "b"
    Trainer(config, run_dir=run).fit()
    (run / RESULT).unlink()
    stale = run / f".{CHECKPOINT}.{dead_pid()}@{_atomic._host()}.0123abcd.tmp"
    stale.write_bytes(b"half a checkpoint")
    live = run / f".{CHECKPOINT}.{os.getppid()}@{_atomic._host()}.0123abcd.tmp"
    live.write_bytes(b"someone else's")
    lines: list[str] = []
    result = Trainer(config, run_dir=run, log=lines.append).fit(resume=True)
    assert result.status == "completed"
    assert not stale.exists()
    assert live.exists()
    assert "removed 1 temporary file(s) left by killed writers" in lines
    assert_same_weights(
        load_tensors(run / FINAL_WEIGHTS), load_tensors(tmp_path / "a" / FINAL_WEIGHTS)
    )


# -- damaged files --------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.999], ids=["empty", "half", "tail_cut"])
def test_truncated_checkpoint_says_so(
    make_config: MakeConfig, tmp_path: Path, keep: float
) -> None:
    """Resuming from a truncated checkpoint raises one RunError that says it is truncated or
    damaged and what to do (torch's own messages, like "[Errno 22] Invalid argument", do
    not), and leaves the file for the user."""
    config = make_config("train.epochs=1")
    Trainer(config, run_dir=tmp_path).fit()
    (tmp_path / RESULT).unlink()
    data = (tmp_path / CHECKPOINT).read_bytes()
    (tmp_path / CHECKPOINT).write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(RunError) as caught:
        Trainer(config, run_dir=tmp_path).fit(resume=True)
    message = str(caught.value)
    assert f"{tmp_path / CHECKPOINT} is truncated or damaged" in message
    assert "remove it and continue with --resume" in message
    assert "Errno" not in message and "\n" not in message
    assert (tmp_path / CHECKPOINT).stat().st_size == int(len(data) * keep)
    assert not (tmp_path / LOCK).exists()


def test_damaged_result_json_is_one_error(tmp_path: Path) -> None:
    """A result.json that is not JSON (a copy cut short) is a RunError naming it."""
    (tmp_path / RESULT).write_text('{"status": "compl')
    with pytest.raises(RunError, match="cannot read .*result.json"):
        finished_result(tmp_path, "abc")


# -- write errors ---------------------------------------------------------------------------


def test_full_disk_during_training_is_one_error_and_keeps_the_checkpoint(
    make_config: MakeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while writing epoch 2's checkpoint raises one RunError naming the checkpoint and
    saying to free space and resume; epoch 1's checkpoint is intact, no temporary file is
    left, and the resumed run ends like an uninterrupted one."""
    config = make_config()
    Trainer(config, run_dir=tmp_path / "a").fit()
    run = tmp_path / "b"
    real = _atomic.write_bytes
    checkpoints = 0

    def write_bytes(path: Path, data: bytes) -> None:
        nonlocal checkpoints
        if path.name == CHECKPOINT:
            checkpoints += 1
            if checkpoints == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(_atomic, "write_bytes", write_bytes)
    with pytest.raises(RunError) as caught:
        Trainer(config, run_dir=run).fit()
    monkeypatch.setattr(_atomic, "write_bytes", real)
    assert str(caught.value) == (
        f"cannot write {run / CHECKPOINT}: No space left on device; free space and continue "
        "with --resume (what was saved is kept)"
    )
    assert load_tensors(run / CHECKPOINT)["epoch"] == 1
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint.pt",
        "config.yaml",
        "metrics.jsonl",
    ]
    Trainer(config, run_dir=run).fit(resume=True)
    assert_same_weights(
        load_tensors(run / FINAL_WEIGHTS), load_tensors(tmp_path / "a" / FINAL_WEIGHTS)
    )


# -- what result.json records ---------------------------------------------------------------


def test_result_records_threads_device_and_versions(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """result.json records, beside the configuration hash, the inputs that change the numbers
    on one machine: torch's thread count, the device, and the numeric stack's versions."""
    torch.set_num_threads(2)  # the autouse fixture restores one thread
    Trainer(make_config("train.epochs=1"), run_dir=tmp_path).fit()
    saved = json.loads((tmp_path / RESULT).read_text())
    assert saved["torch_threads"] == 2
    assert saved["device"] == "cpu"
    assert saved["python_version"] == platform.python_version()
    assert saved["numpy_version"] == np.__version__
    assert saved["torch_version"] == torch.__version__
    assert saved["dicelab_version"]
    assert saved["torch_cuda"] == torch.version.cuda
    assert "torch_blas" in saved and "cpu_capability" in saved


def test_finished_result_reads_results_of_other_versions(tmp_path: Path) -> None:
    """A result.json written before the environment fields existed (or with fields this
    version does not know) still reads back as a finished run."""
    fields = asdict(
        RunResult(
            "completed", 2, None, None, None, 0.5, 1.0, 8, 256, 1.0, "h", None, "0", "2", "cpu"
        )
    )
    old = {k: v for k, v in fields.items() if k != "torch_threads" and k != "numpy_version"}
    (tmp_path / RESULT).write_text(json.dumps({**old, "from_the_future": 1}))
    result = finished_result(tmp_path, "h")
    assert result is not None and result.test_acc == 0.5 and result.torch_threads is None


def test_finished_result_reads_a_diverged_run_only_when_asked(tmp_path: Path) -> None:
    """``train --resume`` continues a diverged run (the default counts only completed runs);
    retraining for evaluate asks for diverged runs too, to read them back."""
    diverged = RunResult(
        "diverged", 1, None, None, None, None, None, 8, 256, 1.0, "h", None, "0", "2", "cpu",
        message="the training loss became NaN or infinite in epoch 2",
    )  # fmt: skip
    (tmp_path / RESULT).write_text(json.dumps(asdict(diverged)))
    assert finished_result(tmp_path, "h") is None
    assert finished_result(tmp_path, "h", ("completed", "diverged")) == diverged
    assert finished_result(tmp_path, "other", ("completed", "diverged")) is None


def test_lock_owner_pid_is_read_while_being_written(tmp_path: Path) -> None:
    """A refused claim waits briefly for the owner's pid rather than printing an empty one."""
    with claim_run_dir(tmp_path):
        (tmp_path / LOCK).write_text("")  # as if the owner had not written its pid yet
        start = time.monotonic()
        with pytest.raises(RunError, match=r"pid unknown"):
            claim_run_dir(tmp_path)
        assert time.monotonic() - start < 2
