"""dicelab: randomness engineering for deep-network training."""

from dicelab.version import __version__

__all__ = ["__version__"]
