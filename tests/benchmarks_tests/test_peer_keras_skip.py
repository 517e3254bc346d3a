"""benchmarks/peer_keras.py without TensorFlow: one line on how to make its venv, exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "peer_keras.py"

# Runs the script as `python benchmarks/peer_keras.py` would, with TensorFlow made unimportable
# (a None entry in sys.modules), so the test means the same whether or not TensorFlow is here.
WITHOUT_TENSORFLOW = (
    "import runpy, sys\n"
    "sys.modules['tensorflow'] = None\n"
    "sys.argv = [sys.argv[1], '--threads', '1']\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def test_without_tensorflow_it_says_how_to_make_the_venv_and_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    assert lines[0].startswith("peer_keras: skipped, TensorFlow")
    assert "pip install tensorflow-cpu" in lines[0]
    assert "TF_USE_LEGACY_KERAS=1" in lines[0]
    assert done.stderr == ""
