"""Fault injection for training runs: two processes racing for one run folder, a disk that
fills up during training, and kill -9 at random moments followed by --resume.

Every test here reproduces a failure that mixed, lost or corrupted a run, or printed a
traceback, before the fix it guards."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dicelab.cli import main
from dicelab.config import config_hash, load_config
from dicelab.train.rundir import LOCK
from dicelab.train.trainer import CHECKPOINT, CONFIG, FINAL_WEIGHTS, METRICS, RESULT
from tmpfs import mounted_tmpfs, resize
from train_tests.conftest import SMALL
from train_tests.test_trainer import (
    _count_lines,
    _train_command,
    assert_same_weights,
    load_tensors,
    read_metrics,
    without_times,
)


def sets(*settings: str) -> list[str]:
    return [arg for setting in settings for arg in ("--set", setting)]


def leftovers(folder: Path) -> list[str]:
    """Temporary files and lock files left in a run folder."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name == LOCK)


def inode(path: Path) -> int | None:
    """The inode of ``path`` (an atomic rewrite changes it), or None if there is none."""
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def assert_same_run(run: Path, reference: Path) -> None:
    """Two run folders hold the same run: metrics (but times), final weights and result."""
    assert without_times(read_metrics(run)) == without_times(read_metrics(reference))
    assert_same_weights(load_tensors(run / FINAL_WEIGHTS), load_tensors(reference / FINAL_WEIGHTS))
    mine, theirs = (json.loads((p / RESULT).read_text()) for p in (run, reference))
    assert mine["status"] == theirs["status"] == "completed"
    for key in ("test_acc", "test_loss", "updates", "examples_seen", "config_hash"):
        assert mine[key] == theirs[key], key


# -- two processes, one --out ---------------------------------------------------------------

#: A process that runs `dicelab train` once for a reference, then once per try into
#: ROOT/run-I, entering Trainer.fit at the same instant as its partner (a file barrier).
_RACER = r"""
import contextlib, io, json, sys, time
from pathlib import Path
from dicelab.cli import main
from dicelab.train import Trainer

seed, root, tries, settings = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
fit, current = Trainer.fit, [-1]

def fit_together(self, **kwargs):
    if current[0] >= 0:  # both processes start claiming the folder at the same instant
        (root / f"ready-{current[0]}-{seed}").touch()
        partner, deadline = root / f"ready-{current[0]}-{1 - seed}", time.monotonic() + 120
        while not partner.exists() and time.monotonic() < deadline:
            time.sleep(0.0001)
    return fit(self, **kwargs)

Trainer.fit = fit_together
command = ["train", "--quiet", "--threads", "1", *settings, "--set", f"seed={seed}"]
assert main([*command, "--out", str(root / f"ref-{seed}")]) == 0
results = []
for i in range(tries):
    current[0] = i
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([*command, "--out", str(root / f"run-{i}")])
    results.append({"code": code, "stderr": err.getvalue()})
print(json.dumps(results))
"""


def test_two_trains_on_one_out_never_mix_a_run(data_root: Path, tmp_path: Path) -> None:
    """Two `dicelab train` processes (seeds 0 and 1) entering training on one --out at the
    same instant, 8 times: each time exactly one exits 0, the other exits 2 with one line,
    and the folder holds the winner's run only (its config, metrics, weights and result).
    Before the run folder was claimed, both exited 0 in 4 of 8 tries, leaving one seed's
    config.yaml beside the other's results."""
    tries = 8
    settings = sets(*SMALL, f"data.root={data_root}", "train.epochs=1", "data.train_limit=64")
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(seed), str(tmp_path), str(tries), *settings],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (0, 1)
    ]
    outcomes = []
    for racer in racers:
        out, err = racer.communicate(timeout=300)
        assert racer.returncode == 0, err
        outcomes.append(json.loads(out.splitlines()[-1]))
    for i in range(tries):
        codes = [outcomes[seed][i]["code"] for seed in (0, 1)]
        assert sorted(codes) == [0, 2], f"try {i}: exit codes {codes}"
        winner = codes.index(0)
        lines = outcomes[1 - winner][i]["stderr"].splitlines()
        assert len(lines) == 1 and lines[0].startswith("dicelab train: error: "), lines
        assert "is in use by another dicelab process (pid " in lines[0] or (
            "already holds a run" in lines[0]  # the loser came after the whole run
        )
        run = tmp_path / f"run-{i}"
        saved = load_config(run / CONFIG)
        assert saved.seed == winner, f"try {i}: config.yaml of seed {saved.seed}"
        assert json.loads((run / RESULT).read_text())["config_hash"] == config_hash(saved)
        assert load_tensors(run / CHECKPOINT)["config_hash"] == config_hash(saved)
        assert_same_run(run, tmp_path / f"ref-{winner}")
        assert leftovers(run) == []


# -- a full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A mount point for a tmpfs the test sizes (root only; skipped where mount is refused)."""
    with mounted_tmpfs(tmp_path / "disk", "size=4k") as disk:
        yield disk


def test_full_disk_during_training_then_resume(
    data_root: Path, tmp_path: Path, small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real tmpfs with room for one checkpoint but not for writing the next: train exits 2
    with one line naming the checkpoint and saying to free space and resume, epoch 1's
    checkpoint is intact and no temporary file is left; after space is freed, --resume ends
    with the run an uninterrupted one gives."""
    argv = ["train", "--quiet", *sets(*SMALL, f"data.root={data_root}")]
    reference = tmp_path / "reference"
    assert main([*argv, "--out", str(reference)]) == 0
    page = 4096
    checkpoint_pages = math.ceil((reference / CHECKPOINT).stat().st_size / page)
    # one checkpoint, half of a second one, and pages for config, metrics and the lock
    resize(small_disk, str((checkpoint_pages + checkpoint_pages // 2 + 6) * page))
    run = small_disk / "run"
    capsys.readouterr()
    assert main([*argv, "--out", str(run)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"dicelab train: error: cannot write {run / CHECKPOINT}: No space left on device; "
        "free space and continue with --resume (what was saved is kept)"
    ]
    assert load_tensors(run / CHECKPOINT)["epoch"] == 1
    assert [row["epoch"] for row in read_metrics(run)] == [1]
    assert leftovers(run) == []
    resize(small_disk, "16m")  # space is freed
    assert main([*argv, "--out", str(run), "--resume"]) == 0
    assert_same_run(run, reference)


# -- kill -9 --------------------------------------------------------------------------------

#: `dicelab train` whose second checkpoint write stops after writing its temporary file,
#: just before the rename, and says so on stdout (so the test kills it at that moment).
_STALLED_WRITER = r"""
import os, sys, time
from dicelab.cli import main

real_replace, checkpoints = os.replace, []

def replace(src, dst):
    if os.path.basename(dst) == "checkpoint.pt":
        checkpoints.append(src)
        if len(checkpoints) == 2:
            print("writing", flush=True)
            time.sleep(120)
    real_replace(src, dst)

os.replace = replace  # what dicelab._atomic renames with
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_during_a_checkpoint_write_leaves_nothing_behind(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A process killed with SIGKILL in the middle of a checkpoint write leaves its temporary
    file; --resume removes it (its writer is dead) and ends like an uninterrupted run.
    Before, the temporary file stayed in the run folder forever."""
    argv = ["train", "--quiet", "--threads", "1", *sets(*SMALL, f"data.root={data_root}")]
    run = tmp_path / "run"
    writer = subprocess.Popen(
        [sys.executable, "-c", _STALLED_WRITER, *argv, "--out", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "writing", writer.communicate()[1]
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.communicate(timeout=30)
    stale = [name for name in leftovers(run) if name.endswith(".tmp")]
    assert len(stale) == 1 and stale[0].startswith(f".{CHECKPOINT}.{writer.pid}")
    assert load_tensors(run / CHECKPOINT)["epoch"] == 1  # the old checkpoint is intact
    reference = tmp_path / "reference"
    assert main([*argv, "--out", str(reference)]) == 0
    assert main([*argv, "--out", str(run), "--resume"]) == 0
    assert leftovers(run) == []
    assert_same_run(run, reference)


# -- kill -9 at random moments --------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume(data_root: Path, tmp_path: Path) -> None:
    """The trainer tests' kill command (6 epochs, techniques with state) is killed with
    SIGKILL at three seeded random moments, each time resumed with --resume, then left to
    finish: it ends with the weights, metrics and result of an uninterrupted run, and no
    temporary or lock file of the killed processes is left behind."""
    rng = random.Random(20240601)
    epochs, epoch_s = 6, 0.2
    run = tmp_path / "killed"
    kills = []
    for _ in range(3):
        done, config_inode = _count_lines(run / METRICS), inode(run / CONFIG)
        # a moment in the epochs left: after `whole` more epochs, `part` into the next
        moment = rng.uniform(0, epochs - done - 0.5)
        whole, part = int(moment), moment - int(moment)
        process = subprocess.Popen(
            [*_train_command(data_root, run), "--resume"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            # training starts once the process has (atomically) rewritten config.yaml
            while inode(run / CONFIG) == config_inode:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "training did not start within 120 s"
                time.sleep(0.002)
            while _count_lines(run / METRICS) < done + whole and process.poll() is None:
                time.sleep(0.002)
            time.sleep(part * epoch_s)
            finished = process.poll() is not None
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()
            _, err = process.communicate(timeout=30)
        assert "Traceback" not in err, err
        kills.append((round(done + moment, 2), finished))
    assert not all(finished for _, finished in kills), f"no kill landed in training: {kills}"
    command = _train_command(data_root, run)[3:]  # `train ...`, without `python -m dicelab`
    assert main([*command, "--resume"]) == 0
    assert main(_train_command(data_root, tmp_path / "reference")[3:]) == 0  # uninterrupted
    assert_same_run(run, tmp_path / "reference")
    assert [row["epoch"] for row in read_metrics(run)] == list(range(1, epochs + 1))
    assert leftovers(run) == []
    assert yaml.safe_load((run / CONFIG).read_text()) == yaml.safe_load(
        (tmp_path / "reference" / CONFIG).read_text()
    )
