"""README.md stays true: it documents every configuration key, dataset and model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from dicelab.config import describe_fields, from_dict
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


def test_every_yaml_example_is_a_valid_configuration() -> None:
    """The configuration examples (the sections, the CIFAR-style recipe) load as they stand."""
    blocks = re.findall(r"```yaml\n(.*?)```", README, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        from_dict(yaml.safe_load(block))


def test_the_examples_in_the_readme_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `>>>` example of the README (the Python API, PSOSampler in plain Optuna) runs and
    prints what the README says, in a fresh folder."""
    import doctest

    monkeypatch.chdir(tmp_path)
    test = doctest.DocTestParser().get_doctest(README, {}, "README.md", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.tries >= 10 and runner.failures == 0
