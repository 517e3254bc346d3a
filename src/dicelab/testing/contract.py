"""The technique contract: properties every registered technique must have.

Subclass :class:`TechniqueContract` in a test module and provide a ``technique_cls`` fixture
(one registered technique class per parameter); dicelab's own suite parametrizes it over the
whole registry, so a new technique is checked without editing any list.

The checks run each technique through a short, fixed training trace on a toy CNN (every hook:
setup, attach, epoch schedules, data order, DATA, LOSS, GRAD, WEIGHT) and compare traces:

- at its default the technique is an exact identity (``torch.equal``) and draws nothing;
- at a mid-range setting it changes the trace;
- same seed ⇒ bitwise-equal trace; different seed ⇒ a different one (unless deterministic);
- with the injector paused (evaluation), DATA/MODEL/LOSS/GRAD/WEIGHT hooks are identities, and
  eval-mode forward passes are unaffected by its forward hooks; a fixed input transform
  (``in_evaluation``, normalize) instead gives paused and eval-mode passes the very inputs its
  DATA hook gives training;
- the caller's global RNG is untouched;
- a ``state_dict`` round trip in mid-run reproduces the rest of the run exactly;
- the declaration is complete: module name = registry name, folder = category, ``repr`` shows
  every hyperparameter.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dicelab.rng import RandomStreams, isolated_global_rng
from dicelab.space import hparams
from dicelab.stages import Context
from dicelab.techniques import BaseTechnique, Injector, mid_range

NUM_CLASSES = 4
TRAIN_SIZE = 64
BATCH = 16
EPOCHS = 4


def toy_model() -> nn.Module:
    """A tiny CNN with every layer kind techniques look for (conv, ReLU, BN, pool, linear)."""
    gen = torch.Generator().manual_seed(1234)
    with isolated_global_rng(0):  # layer constructors draw from the global generator
        model = _toy_layers()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    return model


def _toy_layers() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(4),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 8),
        nn.ReLU(),
        nn.Linear(8, NUM_CLASSES),
    )


def toy_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed inputs (B, 1, 8, 8) in [0, 1], labels and dataset indices."""
    gen = torch.Generator().manual_seed(99)
    x = torch.rand(BATCH, 1, 8, 8, generator=gen)
    y = torch.randint(0, NUM_CLASSES, (BATCH,), generator=gen)
    return x, y, torch.arange(BATCH)


def run_trace(
    technique: BaseTechnique | None,
    *,
    seed: int = 0,
    paused: bool = False,
    epochs: int = EPOCHS,
    resume_at: int | None = None,
) -> dict[str, torch.Tensor]:
    """Train the toy model for ``epochs`` one-batch epochs; every observable, by name.

    With ``resume_at``, the injector's state is saved after that epoch and the rest of the run
    continues in a fresh injector (same technique settings) that loads it.
    """
    model = toy_model()
    technique = copy.deepcopy(technique)
    injector = Injector([technique] if technique is not None else [], seed=seed)
    injector.setup(model, num_classes=NUM_CLASSES, train_size=TRAIN_SIZE, epochs=epochs)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y, indices = toy_batch()
    trace: dict[str, torch.Tensor] = {
        "init": torch.cat([p.detach().flatten() for p in model.parameters()])
    }
    for epoch in range(epochs):
        if resume_at is not None and epoch == resume_at + 1:
            # What a resumed trainer does: a fresh injector set up on the model, then the
            # checkpointed weights and injector state loaded over whatever setup drew.
            state = copy.deepcopy(injector.state_dict())
            weights = copy.deepcopy(model.state_dict())
            injector.detach()
            injector = Injector([copy.deepcopy(technique)] if technique else [], seed=seed)
            injector.setup(model, num_classes=NUM_CLASSES, train_size=TRAIN_SIZE, epochs=epochs)
            model.load_state_dict(weights)
            injector.load_state_dict(state)
        size = injector.start_epoch(epoch, optimizer, base_batch_size=BATCH)
        trace[f"e{epoch}.lr"] = torch.tensor(optimizer.param_groups[0]["lr"])
        trace[f"e{epoch}.batch_size"] = torch.tensor(size)
        order = injector.data_order(TRAIN_SIZE)
        trace[f"e{epoch}.order"] = order if order is not None else torch.arange(TRAIN_SIZE)
        model.train()
        with _maybe_paused(injector, paused):
            inputs, targets = injector.data(x, y, indices)
            logits = model(inputs)
            per_example = injector.loss(logits, targets)
            optimizer.zero_grad()
            per_example.sum().backward()
            injector.before_step(model.parameters())
            grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            optimizer.step()
            injector.end_step()
        trace[f"e{epoch}.inputs"] = inputs.detach()
        trace[f"e{epoch}.targets"] = targets.detach().float()
        trace[f"e{epoch}.logits"] = logits.detach()
        trace[f"e{epoch}.loss"] = per_example.detach()
        trace[f"e{epoch}.grads"] = grads
        trace[f"e{epoch}.weights"] = torch.cat([p.detach().flatten() for p in model.parameters()])
    injector.detach()
    return trace


@contextmanager
def _maybe_paused(injector: Injector, paused: bool) -> Iterator[None]:
    if paused:
        with injector.paused():
            yield
    else:
        yield


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys: Any = None) -> bool:
    """Bitwise equality of two traces (on ``keys`` if given)."""
    keys = list(a) if keys is None else [k for k in a if any(k.endswith(s) for s in keys)]
    return all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in keys)


class TechniqueContract:
    """Pytest suite over a ``technique_cls`` fixture (see the module docstring)."""

    def test_declaration(self, technique_cls: type[BaseTechnique]) -> None:
        module = sys.modules[technique_cls.__module__]
        path = Path(str(module.__file__))
        assert path.stem == technique_cls.name
        assert path.parent.name == technique_cls.category.value
        specs = hparams(technique_cls)
        assert technique_cls.strength in specs
        instance = technique_cls()
        assert instance.is_noop
        for field in specs:
            assert f"{field}=" in repr(instance)
        assert module.__doc__ and technique_cls.__doc__

    def test_default_is_an_exact_identity(self, technique_cls: type[BaseTechnique]) -> None:
        assert same(run_trace(technique_cls()), run_trace(None))

    def test_default_hooks_return_their_inputs_and_draw_nothing(
        self, technique_cls: type[BaseTechnique]
    ) -> None:
        """Called directly (not through an Injector, which skips it), every hook of a
        technique at its default returns its inputs unchanged and creates no generator."""
        technique, streams = technique_cls(), RandomStreams(0)
        technique.bind(streams)
        model = toy_model()
        ctx = Context(num_classes=NUM_CLASSES, train_size=TRAIN_SIZE, epochs=EPOCHS)
        before = [p.detach().clone() for p in model.parameters()]
        technique.setup(model, ctx)
        assert technique.attach(model, ctx) == []
        assert technique.data_order(TRAIN_SIZE, ctx) is None
        assert technique.learning_rate(0.1, 0.1, ctx) == 0.1
        assert technique.batch_size(BATCH, BATCH, ctx) == BATCH
        x, y, ctx.indices = toy_batch()
        out_x, out_y = technique.on_batch(x, y, ctx)
        assert out_x is x and out_y is y
        loss = torch.rand(BATCH)
        assert technique.on_loss(loss, ctx) is loss
        params = list(model.parameters())
        for param in params:
            param.grad = torch.ones_like(param)
        technique.on_grads(params, ctx)
        technique.on_weights(params, ctx)
        assert all(torch.equal(p.grad, torch.ones_like(p)) for p in params if p.grad is not None)
        assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))
        assert streams.state_dict() == {}

    def test_data_hooks_keep_dtype_and_shape(self, technique_cls: type[BaseTechnique]) -> None:
        technique = mid_range(technique_cls)
        ctx = Context(num_classes=NUM_CLASSES, train_size=TRAIN_SIZE, epochs=EPOCHS)
        technique.setup(toy_model(), ctx)
        x, y, ctx.indices = toy_batch()
        out_x, out_y = technique.on_batch(x.double(), y, ctx)
        assert out_x.dtype == torch.float64 and out_x.shape == x.shape
        assert len(out_y) == len(y)

    def test_mid_range_changes_the_run(self, technique_cls: type[BaseTechnique]) -> None:
        assert not same(run_trace(mid_range(technique_cls)), run_trace(None))

    def test_same_seed_same_run_other_seed_other_run(
        self, technique_cls: type[BaseTechnique]
    ) -> None:
        technique = mid_range(technique_cls)
        first = run_trace(technique, seed=3)
        assert same(first, run_trace(technique, seed=3))
        other = run_trace(technique, seed=4)
        assert same(first, other) == technique_cls.deterministic

    def test_paused_hooks_are_identities(self, technique_cls: type[BaseTechnique]) -> None:
        technique = mid_range(technique_cls)
        paused = run_trace(technique, paused=True)
        if technique_cls.in_evaluation:
            # Paused, the DATA stage is skipped and the forward pre-hook transforms instead:
            # the network sees what it sees in training (the inputs are recorded before it).
            training = run_trace(technique)
            assert same(paused, training, ["logits", "loss", "grads", "weights"])
            return
        baseline = run_trace(None, paused=True)
        # INIT (setup) and the epoch schedules act regardless; every per-step hook must not.
        if same(paused, baseline, ["init", "lr", "batch_size"]):
            assert same(paused, baseline, ["inputs", "targets", "logits", "loss", "grads"])
            assert same(paused, baseline, ["weights"])

    def test_eval_forward_is_untouched(self, technique_cls: type[BaseTechnique]) -> None:
        model = toy_model()
        technique = mid_range(technique_cls)
        injector = Injector([technique], seed=0)
        injector.setup(model, num_classes=NUM_CLASSES, train_size=TRAIN_SIZE, epochs=EPOCHS)
        x, y, _ = toy_batch()
        if technique_cls.in_evaluation:  # evaluation sees the training transform
            expected, _ = technique.on_batch(x, y, Context())
        else:
            expected = x
        model.eval()
        with torch.no_grad():
            hooked = model(x)
            injector.detach()
            plain = model(expected)
        assert torch.equal(hooked, plain)

    def test_global_rng_untouched(self, technique_cls: type[BaseTechnique]) -> None:
        before = torch.get_rng_state()
        run_trace(mid_range(technique_cls))
        assert torch.equal(torch.get_rng_state(), before)

    def test_state_round_trip_resumes_exactly(self, technique_cls: type[BaseTechnique]) -> None:
        technique = mid_range(technique_cls)
        assert same(run_trace(technique), run_trace(technique, resume_at=1))

    def test_bad_strength_is_rejected(self, technique_cls: type[BaseTechnique]) -> None:
        spec = hparams(technique_cls)[technique_cls.strength]
        bad: Any = "not-a-choice" if spec.choices is not None else "text"
        if spec.valid is not None and spec.valid[1] is not None:
            bad = spec.valid[1] + 1
        from dicelab.exceptions import ConfigError

        with pytest.raises(ConfigError, match=f"techniques.{technique_cls.name}."):
            technique_cls(**{technique_cls.strength: bad})
