"""benchmarks/bench_gpu.py: it trains a full recipe on synthetic CIFAR files, prints the
throughput and the projected protocol time, and records the entry the dry-runs read; a second
measurement of the same model, dataset, device, precision and batch replaces the first."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from dicelab.reproduce import _common

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def _script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The script as a module (importing it runs nothing)."""
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_gpu", module)  # its dataclass looks itself up
    spec.loader.exec_module(module)
    return module


def test_a_cpu_run_prints_the_throughput_and_records_the_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "throughput.json"
    args = [
        "--device=cpu",
        "--threads=1",
        "--updates=2",
        "--only",
        "paper1/search",
        "--set",
        "model.width=4",
        "--set",
        "train.batch_size=8",
        "--record",
        f"--output={output}",
    ]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "paper1/search: vgg/cifar10 on CPU" in done.stdout
    assert "1 thread(s), fp32, batch 8, " in done.stdout
    assert "img/s" in done.stdout and "paper1 full protocol" in done.stdout
    (entry,) = json.loads(output.read_text())["entries"]
    assert set(entry) == set(_common.ENTRY_KEYS)
    assert (entry["model"], entry["dataset"], entry["batch_size"]) == ("vgg", "cifar10", 8)
    assert entry["img_per_s"] > 0 and entry["peak_memory_mib"] > 0
    assert entry["command"].startswith("python benchmarks/bench_gpu.py --device=cpu")
    # The dry-runs read exactly this entry.
    monkeypatch.setattr(_common, "THROUGHPUT_FILE", output)
    (line,) = _common.cost_lines("vgg", "cifar10", int(entry["img_per_s"] * 3600))
    assert "on CPU" in line and "batch 8, fp32" in line


def test_recording_replaces_the_same_measurement_and_keeps_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _script(monkeypatch)
    output = tmp_path / "throughput.json"
    first = {
        "model": "resnet18",
        "dataset": "cifar10",
        "device": "GPU A",
        "precision": "bf16",
        "batch_size": 256,
        "img_per_s": 100.0,
        "peak_memory_mib": 10.0,
    }
    bench.record(output, [first, {**first, "device": "GPU B"}], "cmd 1")
    entries = bench.record(output, [{**first, "img_per_s": 200.0}], "cmd 2")
    assert [(e["device"], e["img_per_s"], e["command"]) for e in entries] == [
        ("GPU B", 100.0, "cmd 1"),
        ("GPU A", 200.0, "cmd 2"),
    ]
    assert json.loads(output.read_text())["entries"] == entries


def test_a_pattern_matching_no_recipe_is_one_clear_error() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "paper9/*"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--only: ['paper9/*'] match no recipe; the recipes: paper1/search" in done.stderr
    assert "Traceback" not in done.stderr
