"""README.md stays true: it documents every configuration key, dataset and model."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicelab.config import describe_fields
from dicelab.data import list_datasets
from dicelab.models import list_models
from dicelab.techniques import list_techniques

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("key", [k for k, _, _ in describe_fields() if k != "model.options"])
def test_every_config_key_is_documented(key: str) -> None:
    assert f"`{key}`" in README


@pytest.mark.parametrize("name", [info.name for info in list_datasets()])
def test_every_dataset_is_documented(name: str) -> None:
    assert f"`{name}`" in README


@pytest.mark.parametrize("name", [info.name for info in list_models()])
def test_every_model_is_documented(name: str) -> None:
    assert f"`{name}`" in README


def test_the_two_setup_commands_are_the_makefile_targets() -> None:
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in README
        assert f"\n{target}: " in makefile


@pytest.mark.parametrize("name", [cls.name for cls in list_techniques()])
def test_every_technique_is_documented(name: str) -> None:
    assert f"| `{name}` |" in README
