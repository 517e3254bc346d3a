"""dicelab's randomness techniques and SAM in a Lightning ``Trainer``.

Run: python examples/lightning_example.py   (needs ``pip install "dicelab[lightning]"``; a few
seconds on a CPU)
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dicelab.data import load_data, to_float
from dicelab.integrations.lightning import RandomnessCallback, RandomnessModule
from dicelab.optim import SAM


class DigitsNet(RandomnessModule):
    """A small CNN of your own; SAM takes its two passes per update in ``perturbation_step``."""

    num_classes = 10  # label techniques read it

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False  # SAM runs under manual optimization
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = self.randomness.data(*batch)  # DATA: rotation, label smoothing
        self.perturbation_step(x, y)  # MODEL (dropout) and LOSS hooks, SAM's passes, GRAD

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return SAM(self.parameters(), torch.optim.Adam, rho=0.05, lr=1e-3)


def main(epochs: int = 5, seed: int = 0) -> float:
    """Train on digits with four techniques and SAM; returns test accuracy."""
    torch.manual_seed(seed)  # your script, your global RNG: model init and DataLoader shuffle
    data = load_data("digits", split="final")
    train = TensorDataset(to_float(data.train.x), data.train.y)
    loader = DataLoader(train, batch_size=64, shuffle=True)  # the data order is the loader's
    callback = RandomnessCallback(
        {"rotation": 0.05, "label_smoothing": 0.1, "dropout": 0.1, "gradient_noise": 1e-6},
        seed=seed,
    )
    model = DigitsNet()
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[callback],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader)
    model.eval()  # every technique is an identity in evaluation
    with torch.no_grad():
        predicted = model(to_float(data.test.x)).argmax(1)
    return (predicted == data.test.y).float().mean().item()


if __name__ == "__main__":
    print(f"test accuracy: {main():.3f}")
