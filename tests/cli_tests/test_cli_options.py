"""Options of the ``dicelab`` command line itself: ``--version``."""

from __future__ import annotations

import pytest

from dicelab.cli import main
from dicelab.version import __version__


def test_version_prints_name_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``dicelab --version`` prints ``dicelab <version>`` on stdout and exits 0."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out, err = capsys.readouterr()
    assert out == f"dicelab {__version__}\n"
    assert err == ""
