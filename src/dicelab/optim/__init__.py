"""Optimizers: the base optimizers of the papers' search space."""

from dicelab.optim.factory import build_optimizer

__all__ = ["build_optimizer"]
