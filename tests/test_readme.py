"""README.md and the guides in docs/ stay true: they document every configuration key,
dataset, model and technique, their examples run, their configurations load and their links
lead somewhere."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest
import yaml

from dicelab.config import describe_fields, from_dict
from dicelab.data import list_datasets
from dicelab.models import list_models
from dicelab.techniques import list_techniques

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# The front page and every guide (docs/*.md; the API reference pages in docs/reference/ are
# generated from the docstrings, which the doctests of `make test` check).
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = {page: page.read_text() for page in PAGES}
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
DATA_AND_MODELS = (ROOT / "docs" / "data-and-models.md").read_text()
TECHNIQUES = (ROOT / "docs" / "techniques.md").read_text()


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("key", [k for k, _, _ in describe_fields() if k != "model.options"])
def test_every_config_key_is_documented(key: str) -> None:
    assert f"`{key}`" in CONFIGURATION


@pytest.mark.parametrize("name", [info.name for info in list_datasets()])
def test_every_dataset_is_documented(name: str) -> None:
    assert f"`{name}`" in DATA_AND_MODELS


@pytest.mark.parametrize("name", [info.name for info in list_models()])
def test_every_model_is_documented(name: str) -> None:
    assert f"`{name}`" in DATA_AND_MODELS


def test_the_two_setup_commands_are_the_makefile_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    quickstart = (ROOT / "docs" / "quickstart.md").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in README
        assert f"make {target}" in quickstart
        assert f"\n{target}: " in makefile


@pytest.mark.parametrize("name", [cls.name for cls in list_techniques()])
def test_every_technique_is_documented(name: str) -> None:
    assert f"| `{name}` |" in TECHNIQUES


def _yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_the_yaml_examples_are_there() -> None:
    """The configuration sections, the CIFAR-style recipe and the trackers' `log:` line."""
    assert len([block for text in TEXT.values() for block in _yaml_blocks(text)]) >= 2
    assert _yaml_blocks(CONFIGURATION)


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_yaml_example_is_a_valid_configuration(page: Path) -> None:
    """The configuration examples load as they stand."""
    for block in _yaml_blocks(TEXT[page]):
        from_dict(yaml.safe_load(block))


def _doctest(page: Path) -> doctest.DocTest:
    return doctest.DocTestParser().get_doctest(TEXT[page], {}, _name(page), str(page), 0)


def test_the_examples_are_there() -> None:
    """The `>>>` examples (the Python API, PSOSampler in plain Optuna) did not get lost."""
    assert sum(len(_doctest(page).examples) for page in PAGES) >= 10
    assert _doctest(ROOT / "docs" / "python-api.md").examples
    assert _doctest(ROOT / "docs" / "search.md").examples


@pytest.mark.parametrize("page", [page for page in PAGES if ">>> " in TEXT[page]], ids=_name)
def test_the_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `>>>` example of a page runs and prints what the page says, in a fresh folder."""
    monkeypatch.chdir(tmp_path)
    test = _doctest(page)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.tries == len(test.examples) and runner.failures == 0


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {_slug(m) for m in re.findall(r"^#+ (.*)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_relative_link_leads_somewhere(page: Path) -> None:
    """A link to a file names one that exists; a link to a heading names one that exists.
    (mkdocs cannot check links out of docs/, such as ../BENCHMARKS.md: this test does.)"""
    text = re.sub(r"```.*?```", "", TEXT[page], flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{_name(page)}: {link} leads nowhere"
        if anchor and target.suffix == ".md":
            assert anchor in _anchors(target.read_text()), f"{_name(page)}: no heading #{anchor}"


def test_the_front_page_fits_on_two_screens() -> None:
    """The README is the short front page; the detail lives in the guides it links."""
    assert len(README.splitlines()) <= 110
    for guide in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{guide.name})" in README, f"README does not link docs/{guide.name}"


def test_the_front_page_commands_are_the_guides_commands() -> None:
    """The README's set-up and quick-start lines are copied from the guides, not rewritten."""
    guides = "\n".join(TEXT[page] for page in PAGES[1:])
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            assert line in guides, f"README line not in any guide: {line}"
