"""Train your own model with m-ARWP (or SAM, RWP, ...) in your own PyTorch loop.

Run: python examples/perturbed_loop.py   (a few seconds on a CPU)
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from dicelab.data import load_data, to_float
from dicelab.models import frozen_bn_stats
from dicelab.optim import MARWP


def main(epochs: int = 10, seed: int = 0) -> float:
    """A small CNN with BatchNorm on digits, m-ARWP around SGD; returns test accuracy."""
    torch.manual_seed(seed)  # your script, your global RNG: it initialises the model below
    data = load_data("digits", split="final")
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )
    # The wrapper builds the base optimizer from its class and arguments and shares its
    # param_groups, so LR schedulers work on it directly.
    optimizer = MARWP(model.parameters(), torch.optim.SGD, lr=0.05, momentum=0.9, seed=seed)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=2 * epochs)

    # m-ARWP spends two batches per update (clean, then perturbed): twice the epochs.
    for _epoch in range(2 * epochs):
        model.train()
        for start in range(0, len(data.train), 64):
            x = to_float(data.train.x[start : start + 64])
            y = data.train.y[start : start + 64]
            optimizer.perturb()  # a no-op on the clean batch, w + ε on the next one
            freeze = frozen_bn_stats(model) if optimizer.perturbed else nullcontext()
            with freeze:  # BatchNorm statistics come from the clean passes only
                F.cross_entropy(model(x), y).backward()
            optimizer.step()  # keeps the clean gradient, or restores w, mixes and steps
        scheduler.step()

    model.eval()
    with torch.no_grad():
        predictions = model(to_float(data.test.x)).argmax(1)
    return (predictions == data.test.y).float().mean().item()


if __name__ == "__main__":
    print(f"test accuracy {main():.3f}")
