"""The PSO sampler's folder is an OptunaHub package: the hub's layout, loaded by the real
``optunahub.load_local_module`` from a copy placed as ``samplers/pso``, in a process where
dicelab cannot be imported, and its README example and ``example.py`` run there."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

import dicelab.tune._pso as pso_package

FOLDER = Path(pso_package.__file__).parent

# Runs in a fresh interpreter: any import of dicelab fails, the package is loaded from the
# copied registry, and optunahub.load_module (which would download) is pointed at it.
LOADER = """
import importlib.abc, runpy, sys

class NoDicelab(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "dicelab" or name.startswith("dicelab."):
            raise ImportError("dicelab must not be imported by the hub package")
        return None

sys.meta_path.insert(0, NoDicelab())
import optunahub

registry = sys.argv[1]
optunahub.load_module = lambda package, **_: optunahub.load_local_module(
    package, registry_root=registry
)
module = optunahub.load_module(package="samplers/pso")
assert module.PSOSampler.__module__ == "optunahub_registry.package.samplers.pso.sampler"
if sys.argv[2] == "example.py":
    runpy.run_path(registry + "/samplers/pso/example.py", run_name="__main__")
else:
    exec(compile(open(sys.argv[2]).read(), "README example", "exec"), {"__name__": "__main__"})
assert not [m for m in sys.modules if m == "dicelab" or m.startswith("dicelab.")]
"""


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A local registry holding a copy of the sampler's folder as ``samplers/pso``."""
    shutil.copytree(
        FOLDER, tmp_path / "samplers" / "pso", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def _front_matter(readme: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", readme, re.S)
    assert match, "the hub's README starts with a front matter block"
    return yaml.safe_load(match.group(1))


def test_the_folder_has_the_hubs_layout_and_front_matter() -> None:
    for name in ("__init__.py", "README.md", "LICENSE", "example.py"):
        assert (FOLDER / name).is_file(), name
    meta = _front_matter((FOLDER / "README.md").read_text())
    assert {"author", "title", "description", "tags", "optuna_versions", "license"} <= set(meta)
    assert "sampler" in meta["tags"]
    assert optuna.__version__ in [str(v) for v in meta["optuna_versions"]]
    assert meta["license"] == "MIT License"
    assert (FOLDER / "LICENSE").read_text().startswith("MIT License")


def _run(registry: Path, program: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", LOADER, str(registry), program],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=registry,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_example_py_runs_from_the_hub_layout_without_dicelab(registry: Path) -> None:
    out = _run(registry, "example.py")
    assert re.fullmatch(
        r"65 trials, best [0-9.]+ at \{'x': [-0-9.e]+, 'layers': \d, 'activation': '\w+'\}\n", out
    ), out


def test_the_readme_example_runs_without_dicelab(registry: Path, tmp_path: Path) -> None:
    readme = (FOLDER / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) == 1
    program = tmp_path / "readme_example.py"
    program.write_text(blocks[0])
    params = eval(_run(registry, str(program)))  # the printed best_params
    assert set(params) == {"x", "layers", "activation"}
