"""The command line and the file system: an --out that cannot be a run folder, a full disk,
any OSError a command lets escape, and --threads in result.json. Each problem is one line on
stderr and exit status 2, never a traceback, and nothing saved is lost."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicelab import _atomic
from dicelab.cli import _COMMANDS, main
from tmpfs import mounted_tmpfs

from .test_cli import snapshot, train_args


def one_error_line(err: str, command: str = "train") -> str:
    """The single line of ``err``, checked to be a dicelab error line without a traceback."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"dicelab {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """An existing folder nobody can write to: a read-only tmpfs as root (root ignores
    permission bits), a 0o555 folder otherwise."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    with mounted_tmpfs(folder, "size=64k,ro"):
        yield folder


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_out_that_cannot_be_a_folder_is_one_line(
    data_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    """--out naming a file, or a path under a file, exits 2 with one line naming the file,
    and the file is untouched."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    out = blocker if where == "file" else blocker / "sub" / "run"
    assert main([*train_args(data_root), "--out", str(out), "--quiet"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{blocker} is a file, not a folder" in line and "--out" in line
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize("inside", [False, True], ids=["folder", "subfolder"])
def test_read_only_out_is_one_line(
    data_root: Path,
    read_only_folder: Path,
    capsys: pytest.CaptureFixture[str],
    inside: bool,
) -> None:
    """A read-only --out (or a new folder inside one) exits 2 with one line naming the
    folder, the reason, and asking for a writable folder."""
    out = read_only_folder / "run" if inside else read_only_folder
    assert main([*train_args(data_root), "--out", str(out), "--quiet"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot write {out}:" in line
    assert "Read-only file system" in line or "Permission denied" in line
    assert "choose a writable folder with --out" in line


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_out_is_refused(
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    value: str,
) -> None:
    """``--out ""`` (an unset shell variable) is refused instead of writing a run into the
    current folder."""
    monkeypatch.chdir(tmp_path)
    assert main([*train_args(data_root), "--out", value, "--quiet"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"--out: got {value!r}; must name a folder" in line
    assert list(tmp_path.iterdir()) == []


def test_full_disk_is_one_line_and_resume_finishes_the_run(
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ENOSPC on epoch 2's checkpoint (injected: it runs everywhere) exits 2 with one line
    saying to free space and resume; epoch 1's checkpoint is kept, and --resume then ends
    with the same weights and result as an uninterrupted run."""
    argv = [*train_args(data_root), "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "reference")]) == 0
    real = _atomic.write_bytes
    writes = 0

    def write_bytes(path: Path, data: bytes) -> None:
        nonlocal writes
        if path.name == "checkpoint.pt":
            writes += 1
            if writes == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    run = tmp_path / "run"
    capsys.readouterr()
    monkeypatch.setattr(_atomic, "write_bytes", write_bytes)
    assert main([*argv, "--out", str(run)]) == 2
    monkeypatch.setattr(_atomic, "write_bytes", real)
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot write {run / 'checkpoint.pt'}: No space left on device" in line
    assert "free space and continue with --resume" in line
    kept = (run / "checkpoint.pt").read_bytes()
    assert main([*argv, "--out", str(run), "--resume"]) == 0
    assert kept != (run / "checkpoint.pt").read_bytes()  # epoch 2 was trained after all
    assert (run / "model.pt").read_bytes() == (tmp_path / "reference" / "model.pt").read_bytes()
    result, reference = (
        json.loads((p / "result.json").read_text()) for p in (run, tmp_path / "reference")
    )
    assert (result["test_acc"], result["test_loss"]) == (
        reference["test_acc"],
        reference["test_loss"],
    )


def test_os_error_escaping_a_command_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The last resort in main(): an OSError no command turned into a message prints the path
    and the reason on one line and exits 2."""

    def fails(_args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.json")

    summary, add, _run = _COMMANDS["list"]
    monkeypatch.setitem(_COMMANDS, "list", (summary, add, fails))
    assert main(["list", "datasets"]) == 2
    line = one_error_line(capsys.readouterr().err, "list")
    assert line == "dicelab list: error: /data/out.json: No space left on device"


def test_existing_run_is_untouched_by_a_failed_write(
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A resume of a finished run whose folder became unwritable fails with one line and
    leaves every saved file as it was."""
    run = tmp_path / "run"
    argv = [*train_args(data_root), "--out", str(run), "--quiet"]
    assert main(argv) == 0
    before = snapshot(run)

    def read_only(path: Path, data: bytes) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(_atomic, "write_bytes", read_only)
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    assert "Read-only file system; choose a writable folder" in one_error_line(
        capsys.readouterr().err
    )
    assert snapshot(run) == before


def test_threads_flag_is_recorded_in_the_result(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--threads changes the numbers, so result.json records it."""
    run = tmp_path / "run"
    assert (
        main(
            [
                *train_args(data_root, "train.epochs=1"),
                "--out",
                str(run),
                "--threads",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads((run / "result.json").read_text())["torch_threads"] == 2
