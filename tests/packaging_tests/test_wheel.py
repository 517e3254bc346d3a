"""The wheel that ``python -m build`` makes installs and runs in a fresh virtual environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dicelab.version import __version__

ROOT = Path(__file__).resolve().parents[2]


def run(*command: str | Path, cwd: Path, env: dict[str, str]) -> str:
    """Run ``command``; its stdout, or a failure showing what it printed."""
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_wheel_installs_and_trains_in_a_fresh_venv(tmp_path: Path) -> None:
    """Build the wheel from a copy of the source, install it into a new venv (torch first, the
    pinned CPU build, so pip never resolves another torch), then ``dicelab --version``, a
    one-epoch ``dicelab train`` on digits, a load of the shipped mnist5k sample, and a build
    of the fused random kernels from the shipped C source."""
    env = dict(os.environ)
    for key in ("PYTHONPATH", "VIRTUAL_ENV"):  # nothing of this checkout's environment
        env.pop(key, None)
    env.update(OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside it
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    run(
        sys.executable,
        "-m",
        "build",
        "--wheel",
        "--outdir",
        tmp_path / "dist",
        source,
        cwd=tmp_path,
        env=env,
    )
    (wheel,) = (tmp_path / "dist").glob("dicelab-*.whl")
    assert wheel.name.startswith(f"dicelab-{__version__}-py3-none-any")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    pip: list[str | Path] = [python, "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt"]
    run(*pip, "torch==2.13.0", cwd=tmp_path, env=env)
    run(*pip, wheel, cwd=tmp_path, env=env)
    installed = run(python, "-m", "pip", "list", cwd=tmp_path, env=env)
    assert "mlxtend" not in installed.lower()

    work = tmp_path / "work"  # not the checkout: nothing importable but the installed wheel
    work.mkdir()
    dicelab = venv / "bin" / "dicelab"
    assert run(dicelab, "--version", cwd=work, env=env) == f"dicelab {__version__}\n"
    settings = ["data.name=digits", "train.epochs=1", "data.train_limit=64", "device=cpu"]
    settings.append(f"data.root={tmp_path / 'data'}")
    sets = [arg for setting in settings for arg in ("--set", setting)]
    command: list[str | Path] = [
        dicelab,
        "train",
        *sets,
        "--threads",
        "1",
        "--out",
        "run",
        "--quiet",
    ]
    out = run(*command, cwd=work, env=env)
    assert "test accuracy" in out and (work / "run" / "result.json").is_file()
    probe = (
        "import dicelab.data, sys; "
        "bundle = dicelab.data.load_data('mnist5k', root=sys.argv[1], split='final'); "
        "print(dicelab.__file__, len(bundle.train), len(bundle.test))"
    )
    out = run(python, "-c", probe, tmp_path / "data", cwd=work, env=env)
    location, train, test = out.split()
    assert Path(location).is_relative_to(venv) and (train, test) == ("4000", "1000")
    # The fused kernels' C source ships in the wheel and compiles from there.
    kernels = dict(env, DICELAB_CACHE_DIR=str(tmp_path / "cache"))
    probe = "from dicelab.techniques import _fused; print(_fused.in_use())"
    assert run(python, "-c", probe, cwd=work, env=kernels) == "True\n"
