"""The documentation site builds with `mkdocs build --strict`: the guides in docs/ plus the
API reference that mkdocstrings generates from the docstrings (mkdocs.yml)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dicelab.techniques import list_techniques

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference"
# The public API the reference documents: (page, names each must render).
PUBLIC = {
    "dicelab": ["train", "search", "evaluate", "ablate", "analyze", "report"],
    "config": [
        "RunConfig",
        "DataConfig",
        "ModelConfig",
        "OptimizerConfig",
        "ScheduleConfig",
        "TrainConfig",
    ],
    "techniques": ["Injector", "create_technique", "list_techniques"],
    "optim": ["SAM", "RWP", "ARWP", "MRWP", "MARWP", "build_optimizer", "learning_rate"],
    "tune": ["PSOSampler", "SparseInit", "SwarmFinished", "SwarmWaitTimeout"],
    "train": ["Trainer"],
    "data": ["load_data"],
    "models": ["build_model"],
    "lightning": ["RandomnessModule", "RandomnessCallback"],
    "tracking": ["open_trackers"],
}


def _nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


def test_every_guide_and_reference_page_is_in_the_navigation() -> None:
    text = (ROOT / "mkdocs.yml").read_text()
    nav = yaml.safe_load(text[text.index("\nnav:") :])["nav"]
    pages = set(_nav_pages(nav))
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert on_disk | {"index.md"} == pages


def test_every_technique_class_has_a_reference_entry() -> None:
    text = (REFERENCE / "techniques.md").read_text()
    for cls in list_techniques():
        assert f"::: {cls.__module__}.{cls.__qualname__}\n" in text, cls.name


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_the_site_builds_strictly(site: Path) -> None:
    """Every guide is a page; the home page is README.md with its links made site-relative."""
    for guide in (ROOT / "docs").glob("*.md"):
        assert (site / guide.stem / "index.html").exists(), guide.name
    home = (site / "index.html").read_text()
    assert 'href="search/"' in home and "make demo" in home


@pytest.mark.parametrize("page", sorted(PUBLIC))
def test_the_reference_documents_the_public_api(site: Path, page: str) -> None:
    html = (site / "reference" / page / "index.html").read_text()
    for name in PUBLIC[page]:
        assert re.search(rf'id="[\w.]*\b{name}"', html), f"{name} missing from reference/{page}"
    assert ":class:`" not in html and ":func:`" not in html  # Sphinx roles render as code
