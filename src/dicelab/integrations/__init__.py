"""Adapters that plug dicelab into other training stacks.

Each adapter is one module that imports its framework itself, so ``import dicelab`` never needs
them: :mod:`dicelab.integrations.lightning` (``pip install "dicelab[lightning]"``) attaches the
randomness techniques and the perturbation optimizers to a Lightning ``Trainer``.
"""
