"""The name registry."""

from __future__ import annotations

import pytest

from dicelab.exceptions import UnknownNameError
from dicelab.registry import Registry


def test_register_get_and_suggest() -> None:
    reg: Registry[int] = Registry("widget", "widgets.name")
    reg.register("alpha")(1)
    reg.register("beta")(2)
    assert reg.get("alpha") == 1
    assert reg.names() == ["alpha", "beta"]
    assert "beta" in reg and len(reg) == 2
    with pytest.raises(UnknownNameError) as info:
        reg.get("alpah")
    assert str(info.value) == (
        "widgets.name: got 'alpah'; unknown widget; allowed: alpha, beta. Did you mean 'alpha'?"
    )


def test_duplicate_names_raise_unless_replaced() -> None:
    reg: Registry[int] = Registry("widget", "widgets.name")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(2)
    reg.register("a", replace=True)(3)
    assert reg.get("a") == 3
