"""Griffe extension for the API reference: reads dicelab's Sphinx-flavoured docstrings.

The docstrings are Google style, but their text uses Sphinx roles (:class:`Trainer`,
:func:`~dicelab.optim.build_optimizer`, about 220 of them) and one-example sections titled
``Example:`` (Google's parser knows only ``Examples:``). Rather than rewrite the docstrings,
this extension rewrites the text griffe parses, never the source:

- a role becomes inline code: :class:`~dicelab.optim.RWP` -> `RWP` (``~`` keeps the last
  name, as Sphinx shows it), :mod:`dicelab.api` -> `dicelab.api`. Roles are not turned into
  links: many name objects relative to their module, which would not resolve and would fail
  the strict build;
- ``Example:`` becomes ``Examples:``, so its ``>>>`` lines render as a code block instead of
  Markdown (where a printed list ``[1, 2]`` reads as a broken reference link).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`]+)`")
_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.M)


def _code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def convert(text: str) -> str:
    """The docstring text with Sphinx roles as inline code and ``Example:`` as ``Examples:``."""
    return _EXAMPLE.sub(r"\1Examples:", _ROLE.sub(_code, text))


class SphinxRoles(griffe.Extension):
    """Rewrites each object's docstring with :func:`convert` as griffe loads it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
