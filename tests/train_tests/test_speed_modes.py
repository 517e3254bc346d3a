"""The trainer's speed settings: channels_last memory, mixed precision and torch.compile.

channels_last is on by default for convolutional models because it measured faster on CPU
(BENCHMARKS.md). The tolerance test below is what "the same results up to float rounding"
means: on one batch of the test VGG, the per-example losses agree to a relative 2e-4 and each
parameter's gradient to 2e-2 of its norm. Measured: losses 5e-6 (2 threads) to 2e-5 (1 thread);
gradients 5e-5 (2 threads), and up to 6.7e-3 with 1 thread in the first block, whose 8x8 digit
images hold many tied pixel values: a pre-activation within rounding of 0 falls on the other
side of a ReLU in the other layout. bf16 differs far more (gradients up to 0.48 of their largest
entry), which is why it is not a default.
"""

from __future__ import annotations

import math

import pytest
import torch

from dicelab.config import apply_overrides, from_dict, load_config
from dicelab.exceptions import ConfigError
from dicelab.techniques import list_techniques, mid_range
from dicelab.train import Trainer

BASE = [
    "data.name=digits",
    "model.name=vgg",
    "model.width=8",
    "data.train_limit=256",
    "device=cpu",
    "train.epochs=2",
    "train.batch_size=64",
    "optimizer.lr=0.01",
]


def trainer(*overrides: str, base: list[str] = BASE) -> Trainer:
    return Trainer(load_config(overrides=[*base, *overrides]))


def first_batch_gradients(run: Trainer) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Per-example losses and every parameter's gradient for the first training batch."""
    x, y, _ = next(run._batches(run.data.train, 64, None))
    run.optimizer.zero_grad()
    _, per_example = run._backward(x, y)
    return per_example.detach(), [p.grad.contiguous() for p in run.model.parameters()]


def test_channels_last_is_on_for_convolutional_models_only() -> None:
    vgg = trainer()
    assert vgg.channels_last
    conv = next(m for m in vgg.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    mlp = ["data.name=digits", "model.name=fc", "data.train_limit=64", "device=cpu"]
    assert not trainer(base=mlp).channels_last
    assert not trainer("train.channels_last=false").channels_last


def test_channels_last_agrees_with_the_default_layout_up_to_float_rounding() -> None:
    loss_a, grads_a = first_batch_gradients(trainer("train.channels_last=false"))
    loss_b, grads_b = first_batch_gradients(trainer("train.channels_last=true"))
    assert torch.allclose(loss_a, loss_b, rtol=2e-4, atol=0)
    for a, b in zip(grads_a, grads_b, strict=True):
        assert (a - b).norm() <= 2e-2 * a.norm()
    # and it is a different computation, not the same one twice
    assert not all(torch.equal(a, b) for a, b in zip(grads_a, grads_b, strict=True))


def test_bf16_trains_on_digits() -> None:
    """bf16 learns (digits has 10 classes: chance is 0.1); in 3 short epochs it measured 0.67
    against fp32's 0.82, the kind of gap a short run's rounding makes."""
    results = {}
    for precision in ("fp32", "bf16"):
        run = trainer(f"train.precision={precision}", "train.epochs=3", "data.train_limit=512")
        for _ in range(3):
            run.train_epoch()
        results[precision] = run.evaluate(run.data.test)[1]
    assert results["fp32"] > 0.5 and results["bf16"] > 0.5, results


def test_fp16_scales_the_loss() -> None:
    """fp16 runs with a GradScaler (on CPU too) whose scale is part of the checkpoint (the
    resume test in test_trainer.py runs fp16 too)."""
    run = trainer("train.precision=fp16", "train.epochs=1")
    assert run.scaler is not None and run.train_epoch() is not None
    assert run.state_dict()["grad_scaler"]["scale"] == run.scaler.get_scale()
    assert trainer().state_dict()["grad_scaler"] is None


def test_fp16_refuses_a_perturbation_optimizer() -> None:
    with pytest.raises(ConfigError, match="train.precision.*fp16.*no perturbation optimizer"):
        trainer("train.precision=fp16", "optimizer.perturbation=sam")


@pytest.mark.parametrize("mode", ["bf16", "fp16"])
@pytest.mark.parametrize("technique", [cls.name for cls in list_techniques()])
def test_every_technique_works_in_channels_last_and_mixed_precision(
    technique: str, mode: str
) -> None:
    """One epoch with the technique at a typical setting, channels_last and bf16 or fp16 (with
    its loss scaling), trains without error to a finite loss (the techniques' own tests check
    what each does)."""
    params = mid_range(next(c for c in list_techniques() if c.name == technique))
    fast = [*BASE, "train.channels_last=true", f"train.precision={mode}", "train.epochs=1"]
    config = from_dict(
        apply_overrides({"techniques": {technique: params.hyperparameters()}}, fast)
    )
    on = Trainer(config).train_epoch()
    assert on is not None and math.isfinite(on["train_loss"])


@pytest.mark.slow
def test_compile_trains_with_techniques_on() -> None:
    """torch.compile with two hook-based techniques (the generator calls break the graph
    around them): the compiled model trains and matches eager to float rounding on a
    technique-free first batch."""
    tiny = ["data.name=digits", "model.name=fc", "data.train_limit=128", "device=cpu"]
    eager = trainer("train.compile=false", base=tiny)
    compiled = trainer("train.compile=true", base=tiny)
    loss_e, grads_e = first_batch_gradients(eager)
    loss_c, grads_c = first_batch_gradients(compiled)
    assert torch.allclose(loss_e, loss_c, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_e, grads_c, strict=True):
        assert (a - b).abs().max() <= 1e-4 * a.abs().max()
    noisy = trainer(
        "train.compile=true",
        "techniques.activation_noise.std=0.05",
        "techniques.dropconnect.p=0.2",
        "train.epochs=1",
        base=tiny,
    )
    metrics = noisy.train_epoch()
    assert metrics is not None and math.isfinite(metrics["train_loss"])
