"""mkdocs hook: the site's home page is README.md, with its links made relative to docs/.

README.md is the front page on GitHub and the site's index.md at once, so the two never
drift apart. Its links point into docs/ (`docs/search.md`), which on the site are pages of
the same folder (`search.md`); links to the repository's other files (`BENCHMARKS.md`) go one
folder up, where they are right on GitHub and reported at INFO level by mkdocs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files


def readme_as_index(text: str) -> str:
    """README.md's Markdown with every relative link rewritten for a page in docs/."""

    def fix(match: re.Match[str]) -> str:
        target = match.group(2)
        if re.match(r"[a-z]+:|#|/", target):
            return match.group(0)
        target = target[len("docs/") :] if target.startswith("docs/") else "../" + target
        return f"{match.group(1)}({target})"

    return re.sub(r"(\[[^\]]*\])\(([^)\s]+)\)", fix, text)


def on_files(files: Files, config: Any) -> Files:
    readme = Path(config["config_file_path"]).parent / "README.md"
    files.append(File.generated(config, "index.md", content=readme_as_index(readme.read_text())))
    return files
