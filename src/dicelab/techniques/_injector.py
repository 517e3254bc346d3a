"""The Injector: runs a set of techniques at the stages of any training loop.

A few lines add randomness techniques to your own loop::

    injector = Injector.from_config({"dropout": 0.2, "gradient_noise": {"eta": 0.3}}, seed=0)
    injector.setup(model, num_classes=10, train_size=len(train_x))
    for epoch in range(epochs):
        batch_size = injector.start_epoch(epoch, optimizer, base_batch_size=128)
        for x, y in batches(batch_size):
            x, targets = injector.data(x, y)              # DATA: augmentation, noise, labels
            per_example = injector.loss(model(x), targets)  # MODEL hooks run inside model(x)
            optimizer.zero_grad()
            per_example.mean().backward()
            injector.before_step(model.parameters())     # GRAD masks/noise, then WEIGHT noise
            optimizer.step()
            injector.end_step()
    injector.detach()

The dicelab trainer uses exactly this API. Techniques at their default are left out entirely,
so an injector of techniques that are all off costs nothing and changes nothing. Evaluate with
the model in ``eval()`` mode (or inside :meth:`Injector.paused`): every technique is then an
identity, except a fixed input transform (``normalize``), which the model's forward pre-hook
applies to the evaluation inputs as the DATA stage applied it to the training batches.

Under torchrun, give each process its ``rank``: the draws on the rank's own batch (DATA, the
forward hooks, LOSS) then come from the rank's own streams, and those at setup, at the epoch
start and before the step (GRAD, WEIGHT) from streams shared by every rank (the rule and why:
:mod:`dicelab.techniques._base`). Rank 0 draws what one process draws.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from dicelab.exceptions import ConfigError
from dicelab.rng import RandomStreams
from dicelab.stages import Context
from dicelab.techniques._base import _HOOKS, BaseTechnique, create_technique


class Injector:
    """Applies techniques at their stages and keeps the step context and their state.

    Args:
        techniques: technique instances; those at their default (off) are skipped.
        seed: the run seed; each technique draws from its own stream derived from it.
        rank: this process's rank under torchrun (0 alone): the per-example draws of rank
            ``r > 0`` come from streams of their own (see the module docs).
    """

    def __init__(
        self, techniques: Iterable[BaseTechnique] = (), *, seed: int = 0, rank: int = 0
    ) -> None:
        self.techniques = list(techniques)
        names = [t.name for t in self.techniques]
        if len(set(names)) != len(names):
            raise ValueError(f"each technique may appear once, got {names}")
        self.streams = RandomStreams(seed, rank=rank)
        for technique in self.techniques:
            technique.bind(self.streams)
        self.active = [t for t in self.techniques if not t.is_noop]
        self._by_hook = {
            hook: sorted(
                (
                    t
                    for t in self.active
                    if getattr(type(t), hook) is not getattr(BaseTechnique, hook)
                ),
                key=lambda t: t.priority,
            )
            for hook in _HOOKS
        }
        self.ctx = Context()
        self._handles: list[tuple[BaseTechnique, RemovableHandle]] = []
        self._base_lrs: list[float] | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, seed: int = 0, rank: int = 0) -> Injector:
        """From ``{name: {hyperparameter: value}}`` (or ``{name: strength}``) mappings."""
        techniques = [create_technique(name, params) for name, params in config.items()]
        return cls(techniques, seed=seed, rank=rank)

    # -- once -----------------------------------------------------------------------------

    def setup(
        self,
        model: nn.Module,
        *,
        num_classes: int,
        train_size: int = 0,
        epochs: int = 0,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        """Run the INIT hooks and attach the MODEL hooks to ``model`` (any ``nn.Module``).

        Given ``input_shape`` (one example's shape), image-only techniques are checked against
        it here, before any training, rather than at the first batch.
        """
        if input_shape is not None and len(input_shape) != 3:
            for technique in self.active:
                if technique.needs_images:
                    raise ConfigError(
                        f"techniques.{technique.name}",
                        getattr(technique, technique.strength),
                        f"works on images (C, H, W) only, and these inputs have shape "
                        f"{tuple(input_shape)}; turn it off for this dataset",
                    )
        self.ctx.num_classes = num_classes
        self.ctx.train_size = train_size
        self.ctx.epochs = epochs
        with self.streams.replicated():  # masks and tables that define the model or the data
            for technique in self._by_hook["setup"]:
                technique.setup(model, self.ctx)
            for technique in self._by_hook["attach"]:
                self._handles.extend((technique, h) for h in technique.attach(model, self.ctx))

    def detach(self, *, randomness_only: bool = False) -> None:
        """Remove the forward hooks this injector attached: all of them, or with
        ``randomness_only`` all but those of the techniques that act in evaluation too
        (``normalize``: a model trained on normalised inputs needs them on every input)."""
        kept = []
        for technique, handle in self._handles:
            if randomness_only and technique.in_evaluation:
                kept.append((technique, handle))
            else:
                handle.remove()
        self._handles = kept

    # -- every epoch ----------------------------------------------------------------------

    def learning_rate(self, base_lr: float, epoch: int) -> float:
        """The learning rate the schedules give epoch ``epoch`` for a base rate ``base_lr``."""
        ctx = replace(self.ctx, epoch=epoch)
        lr = base_lr
        with self.streams.replicated():
            for technique in self._by_hook["learning_rate"]:
                lr = technique.learning_rate(lr, base_lr, ctx)
        return lr

    def batch_size(self, base_size: int, epoch: int) -> int:
        """The batch size the schedules give epoch ``epoch`` for a base size ``base_size``."""
        ctx = replace(self.ctx, epoch=epoch)
        size = base_size
        with self.streams.replicated():
            for technique in self._by_hook["batch_size"]:
                size = technique.batch_size(size, base_size, ctx)
        return size

    def start_epoch(
        self,
        epoch: int,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        base_batch_size: int | None = None,
    ) -> int | None:
        """Enter epoch ``epoch``: set the optimizer's learning rates, return the batch size."""
        self.ctx.epoch = epoch
        if optimizer is not None and self._by_hook["learning_rate"]:
            if self._base_lrs is None:
                self._base_lrs = [group["lr"] for group in optimizer.param_groups]
            for group, base in zip(optimizer.param_groups, self._base_lrs, strict=True):
                group["lr"] = self.learning_rate(base, epoch)
        if base_batch_size is None:
            return None
        return self.batch_size(base_batch_size, epoch)

    def data_order(self, size: int) -> torch.Tensor | None:
        """This epoch's example order (a permutation), or ``None`` for the stored order; the
        same on every rank (each takes its share of one global order)."""
        order = None
        with self.streams.replicated():
            for technique in self._by_hook["data_order"]:
                order = technique.data_order(size, self.ctx)
        return order

    # -- every step -----------------------------------------------------------------------

    def data(
        self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DATA stage on a float batch in [0, 1]; returns inputs and (possibly soft) targets."""
        if not self.ctx.training:
            return x, y
        self.ctx.indices = indices
        for technique in self._by_hook["on_batch"]:
            x, y = technique.on_batch(x, y, self.ctx)
        return x, y

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-example cross-entropy ``(B,)`` (hard or soft targets), then the LOSS hooks."""
        per_example = F.cross_entropy(logits, targets, reduction="none")
        if self.ctx.training:
            for technique in self._by_hook["on_loss"]:
                per_example = technique.on_loss(per_example, self.ctx)
        return per_example

    def before_step(self, params: Iterable[nn.Parameter]) -> None:
        """GRAD hooks then WEIGHT hooks; call after ``backward()``, before ``step()``. Their
        draws are the same on every rank: under torchrun, call it once the gradients are
        all-reduced, so that every replica takes the same step."""
        if not self.ctx.training or not (self._by_hook["on_grads"] or self._by_hook["on_weights"]):
            return
        trainable: Sequence[nn.Parameter] = [p for p in params if p.requires_grad]
        with torch.no_grad(), self.streams.replicated():
            for technique in self._by_hook["on_grads"]:
                technique.on_grads(trainable, self.ctx)
            for technique in self._by_hook["on_weights"]:
                technique.on_weights(trainable, self.ctx)

    def end_step(self) -> None:
        """Count one optimizer update (the step ``t`` of the annealing schedules)."""
        self.ctx.step += 1

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Every technique is an identity inside the block (evaluation, BN recalibration),
        except a fixed input transform (``in_evaluation``), which the model's inputs still get
        through its forward pre-hook."""
        training = self.ctx.training
        self.ctx.training = False
        try:
            yield
        finally:
            self.ctx.training = training

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Step counters, base learning rates, generator states and technique state."""
        return {
            "step": self.ctx.step,
            "epoch": self.ctx.epoch,
            "base_lrs": self._base_lrs,
            "streams": self.streams.state_dict(),
            "techniques": {t.name: t.state_dict() for t in self.active},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (after :meth:`setup`)."""
        self.ctx.step = state["step"]
        self.ctx.epoch = state["epoch"]
        self._base_lrs = state["base_lrs"]
        self.streams.load_state_dict(state["streams"])
        for technique in self.active:
            technique.load_state_dict(state["techniques"].get(technique.name, {}))

    def __repr__(self) -> str:
        return f"Injector({', '.join(repr(t) for t in self.active)})"
