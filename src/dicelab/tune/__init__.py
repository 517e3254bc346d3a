"""Search where and how much randomness helps: a storage-backed PSO sampler for Optuna and the
dicelab search, evaluation and storage helpers built on it. Needs optuna."""

from dicelab.tune._pso.sampler import NO_RETRY, PSOSampler, SparseInit, SwarmFinished

__all__ = ["NO_RETRY", "PSOSampler", "SparseInit", "SwarmFinished"]
