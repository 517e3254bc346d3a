"""The storage-backed particle swarm sampler (see :mod:`dicelab.tune._pso.sampler`)."""
