"""Add dicelab's randomness techniques to your own PyTorch training loop.

Run: python examples/custom_loop.py   (a few seconds on a CPU)
"""

from __future__ import annotations

import torch
from torch import nn

from dicelab.data import load_data, to_float
from dicelab.techniques import Injector


def main(epochs: int = 5, seed: int = 0) -> float:
    """Train a small CNN of your own on digits with four techniques; returns test accuracy."""
    torch.manual_seed(seed)  # your script, your global RNG: it initialises the model below
    data = load_data("digits", split="final")
    model = nn.Sequential(  # any nn.Module: techniques attach through hooks
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    injector = Injector.from_config(
        {"shuffle": True, "rotation": 0.05, "dropout": 0.1, "gradient_noise": {"eta": 1e-6}},
        seed=seed,
    )
    injector.setup(model, num_classes=data.num_classes, train_size=len(data.train), epochs=epochs)

    for epoch in range(epochs):
        batch_size = injector.start_epoch(epoch, optimizer, base_batch_size=64)
        order = injector.data_order(len(data.train))
        order = torch.arange(len(data.train)) if order is None else order
        model.train()
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x, targets = injector.data(to_float(data.train.x[idx]), data.train.y[idx], idx)
            per_example = injector.loss(model(x), targets)  # (B,) cross-entropy x loss noise
            optimizer.zero_grad()
            per_example.mean().backward()
            injector.before_step(model.parameters())  # gradient masks/noise, weight noise
            optimizer.step()
            injector.end_step()

    model.eval()
    with torch.no_grad():
        predictions = model(to_float(data.test.x)).argmax(1)
    injector.detach()
    return (predictions == data.test.y).float().mean().item()


if __name__ == "__main__":
    print(f"test accuracy {main():.3f}")
