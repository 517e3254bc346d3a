"""Test suites shipped with dicelab, so plugin authors can run the same checks."""
