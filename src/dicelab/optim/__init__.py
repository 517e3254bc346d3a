"""Optimizers: the first paper's base optimizers and the second paper's weight-perturbation
wrappers (SAM/ASAM, RWP, ARWP, m-RWP, m-ARWP) around any ``torch.optim`` optimizer."""

from dicelab.optim._base import PerturbationError, PerturbedOptimizer
from dicelab.optim.factory import PERTURBATIONS, base_optimizer, build_optimizer
from dicelab.optim.mrwp import MARWP, MRWP
from dicelab.optim.rwp import ARWP, RWP
from dicelab.optim.sam import SAM

__all__ = [
    "ARWP",
    "MARWP",
    "MRWP",
    "PERTURBATIONS",
    "RWP",
    "SAM",
    "PerturbationError",
    "PerturbedOptimizer",
    "base_optimizer",
    "build_optimizer",
]
