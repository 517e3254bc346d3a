"""Every registered technique passes the shipped contract suite."""

from __future__ import annotations

import pytest

from dicelab.techniques import BaseTechnique, list_techniques
from dicelab.testing.contract import TechniqueContract


@pytest.fixture(params=[cls.name for cls in list_techniques()])
def technique_cls(request: pytest.FixtureRequest) -> type[BaseTechnique]:
    """One registered technique class per parameter."""
    return next(cls for cls in list_techniques() if cls.name == request.param)


class TestAllTechniques(TechniqueContract):
    """The contract, over the whole registry."""
