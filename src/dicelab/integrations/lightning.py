"""dicelab's randomness techniques and perturbation optimizers in a Lightning ``Trainer``.

Two pieces, used together:

- :class:`RandomnessCallback` owns an :class:`~dicelab.techniques.Injector` and drives its
  stages from Lightning's hooks, in the order of dicelab's own trainer.
- :class:`RandomnessModule` is a ``LightningModule`` base class: it gives ``training_step``
  the DATA and LOSS stages (``self.randomness.data`` and ``self.randomness.loss``, plain
  cross-entropy while no callback is attached) and :meth:`RandomnessModule.perturbation_step`,
  the whole update of a perturbation optimizer (SAM, ASAM, RWP, ARWP, m-RWP, m-ARWP) under
  manual optimization.

Where each stage runs:

=============================  ==============================================================
stage                          where, and what the module has to do
=============================  ==============================================================
INIT + MODEL (``setup``,       ``on_train_start``: the techniques' setup (weight init, frozen
``attach``)                    masks) and forward hooks on the LightningModule (its ReLUs,
                               Linear/Conv layers). Nothing to do.
learning-rate schedule         ``on_train_epoch_start``: the optimizer's rates for the epoch.
                               Refused beside a Lightning LR scheduler (both would set them).
DATA (``on_batch``)            ``self.randomness.data(x, y)`` (``indices`` too for
                               ``label_noise``) in ``training_step``, once per batch.
LOSS (``on_loss``)             ``self.randomness.loss(logits, targets)``: per-example
                               cross-entropy ``(B,)`` (soft targets too), then loss noise;
                               reduce it yourself (``.mean()``).
GRAD + WEIGHT (``on_grads``,   ``on_before_optimizer_step`` (after AMP unscaling, before
``on_weights``)                Lightning's gradient clipping); with a perturbation optimizer
                               just before its base optimizer's step, after the weights are
                               restored and the update gradient formed. Nothing to do.
data order, batch size         **refused** (``shuffle``, ``batch_schedule``): Lightning's
                               ``DataLoader`` owns them. Use ``DataLoader(shuffle=True,
                               generator=...)``, or dicelab's ``Trainer``.
=============================  ==============================================================

Nothing is silently skipped: a DATA or LOSS technique whose stage ``training_step`` never
called stops the run at the end of the batch with a message saying which call is missing.
Outside the training loop (validation, test, sanity checks) every technique is an identity.

Example:
    >>> import torch, lightning as L
    >>> from torch import nn
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from dicelab.integrations.lightning import RandomnessCallback, RandomnessModule
    >>> class Net(RandomnessModule):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    ...     def forward(self, x):
    ...         return self.net(x)
    ...     def training_step(self, batch, batch_idx):
    ...         x, y = self.randomness.data(*batch)          # DATA
    ...         return self.randomness.loss(self(x), y).mean()  # MODEL hooks, LOSS
    ...     def configure_optimizers(self):
    ...         return torch.optim.SGD(self.parameters(), lr=0.1)
    >>> data = TensorDataset(torch.rand(32, 4), torch.randint(0, 3, (32,)))
    >>> callback = RandomnessCallback(
    ...     {"input_noise": 0.1, "dropout": 0.2, "gradient_noise": {"eta": 0.01}}, seed=0
    ... )
    >>> trainer = L.Trainer(
    ...     max_epochs=1, callbacks=[callback], accelerator="cpu", logger=False,
    ...     enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
    ... )
    >>> trainer.fit(Net(), DataLoader(data, batch_size=8))
    >>> callback.injector.ctx.step  # updates counted by the annealing schedules
    4

A perturbation optimizer runs under manual optimization: set
``self.automatic_optimization = False`` and let :meth:`RandomnessModule.perturbation_step`
take the passes (SAM two per update, RWP one, m-RWP two over two consecutive batches)::

    class SAMNet(Net):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            x, y = self.randomness.data(*batch)
            loss = self.perturbation_step(x, y)
            self.log("train_loss", loss)

        def configure_optimizers(self):
            return dicelab.optim.SAM(self.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

try:
    import lightning.pytorch as pl
except ModuleNotFoundError as error:  # pragma: no cover - the dev extra installs it
    raise ImportError(
        "dicelab.integrations.lightning needs Lightning. Install it with: "
        'pip install "dicelab[lightning]".'
    ) from error

from dicelab.exceptions import ConfigError
from dicelab.models.batchnorm import frozen_bn_stats
from dicelab.optim._base import PerturbedOptimizer
from dicelab.techniques import BaseTechnique, Injector

__all__ = ["RandomnessCallback", "RandomnessModule"]

#: Epoch-start hooks that need the data loader, which Lightning's DataLoader owns.
_LOADER_HOOKS = {
    "data_order": "the order of the examples",
    "batch_size": "the batch size",
}


def _uses(technique: BaseTechnique, hook: str) -> bool:
    """Whether ``technique`` overrides ``hook``."""
    return getattr(type(technique), hook) is not getattr(BaseTechnique, hook)


class _Off:
    """The stages with no techniques: what ``self.randomness`` is without a callback."""

    def data(
        self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch unchanged."""
        return x, y

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-example cross-entropy ``(B,)``."""
        return F.cross_entropy(logits, targets, reduction="none")


class RandomnessCallback(pl.Callback):
    """Runs dicelab's randomness techniques in a Lightning ``Trainer`` (see the module docs).

    Args:
        techniques: ``{name: {hyperparameter: value}}`` or ``{name: strength}`` as in a run
            configuration's ``techniques:`` section, or a ready :class:`Injector` (then
            ``seed`` is its own). ``None`` or ``{}``: no techniques, and the run is exactly the
            run without the callback.
        seed: the run seed; every technique draws from its own stream derived from it.
        num_classes: classes of the task (label techniques need it); by default the
            LightningModule's ``num_classes`` attribute, if it has one.
        train_size: training examples (``label_noise`` needs it); by default the length of
            the training DataLoader's dataset.
        input_shape: one example's shape; image-only techniques are then checked against it
            before training.

    Raises:
        ConfigError: a technique needs the data loader (``shuffle``, ``batch_schedule``).
    """

    def __init__(
        self,
        techniques: Mapping[str, Any] | Injector | None = None,
        *,
        seed: int = 0,
        num_classes: int | None = None,
        train_size: int | None = None,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        if isinstance(techniques, Injector):
            self.injector = techniques
        else:
            self.injector = Injector.from_config(techniques or {}, seed=seed)
        for technique in self.injector.active:
            for hook, what in _LOADER_HOOKS.items():
                if _uses(technique, hook):
                    raise ConfigError(
                        f"techniques.{technique.name}",
                        getattr(technique, technique.strength),
                        f"sets {what}, which under Lightning belongs to your DataLoader; "
                        "leave it off here",
                        "Shuffle with DataLoader(shuffle=True, generator=...), or train with "
                        "dicelab's Trainer (or an Injector loop of your own), which runs it.",
                    )
        self.num_classes = num_classes
        self.train_size = train_size
        self.input_shape = input_shape
        self._data_techniques = [t.name for t in self.injector.active if _uses(t, "on_batch")]
        self._loss_techniques = [t.name for t in self.injector.active if _uses(t, "on_loss")]
        self._trainer: pl.Trainer | None = None
        self._module: RandomnessModule | None = None
        self._is_set_up = False
        self._pending_state: Mapping[str, Any] | None = None
        self._step_hooks: list[RemovableHandle] = []
        self._data_calls = 0
        self._loss_calls = 0

    # -- the stages training_step calls ---------------------------------------------------

    @contextmanager
    def _stage(self) -> Iterator[None]:
        """Techniques act inside Trainer.fit's training loop only (identity elsewhere)."""
        if self._trainer is None and self.injector.active:
            raise RuntimeError(
                "RandomnessCallback: its stages run inside a Trainer; pass the callback to "
                "it (Trainer(callbacks=[callback])) and call trainer.fit(...)"
            )
        # Validation, sanity checks, test and predict: every technique is an identity.
        training = self._is_set_up and self._trainer is not None and self._trainer.training
        with nullcontext() if training else self.injector.paused():
            yield

    def data(
        self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DATA stage on a float batch ``x`` in [0, 1] and labels ``y`` ``(B,)``; returns the
        inputs and the (possibly soft, ``(B, K)``) targets. Call it once per batch, before the
        forward pass; ``indices`` (dataset indices ``(B,)``) are needed by ``label_noise``."""
        self._data_calls += 1
        with self._stage():
            return self.injector.data(x, y, indices)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-example cross-entropy ``(B,)`` of ``logits`` ``(B, K)`` against hard or soft
        ``targets``, then the LOSS techniques; reduce it yourself (``.mean()``)."""
        self._loss_calls += 1
        with self._stage():
            return self.injector.loss(logits, targets)

    # -- Lightning hooks ------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Any stage: give a :class:`RandomnessModule` this callback as ``self.randomness``."""
        self._trainer = trainer
        if isinstance(pl_module, RandomnessModule):
            pl_module.randomness = self
            self._module = pl_module

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Remove the optimizer hooks; ``self.randomness`` is plain cross-entropy again. The
        MODEL hooks stay on the network (identities in evaluation; ``normalize`` still
        normalises its inputs)."""
        for handle in self._step_hooks:
            handle.remove()
        self._step_hooks = []
        if self._module is not None:
            del self._module.randomness  # back to the class default
            self._module = None
        self._trainer = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Check the setup; set the techniques up and attach the MODEL hooks (first fit
        only); hook the GRAD/WEIGHT stages and the update count onto the optimizer."""
        optimizers = trainer.optimizers
        perturbed = [opt for opt in optimizers if isinstance(opt, PerturbedOptimizer)]
        if perturbed and pl_module.automatic_optimization:
            raise RuntimeError(
                f"{type(perturbed[0]).__name__} needs manual optimization under Lightning: set "
                "`self.automatic_optimization = False` in the module's __init__ and call "
                "`self.perturbation_step(x, y)` in training_step (RandomnessModule)"
            )
        if perturbed and str(trainer.precision) in ("16-mixed", "16"):
            raise ConfigError(
                "Trainer.precision",
                str(trainer.precision),
                "takes no perturbation optimizer (their noise and ascent read the loss-scaled "
                "gradients): use bf16-mixed or 32-true",
            )
        if not self.injector.active:
            return
        if len(optimizers) != 1:
            raise ValueError(
                f"RandomnessCallback: techniques need exactly one optimizer, got "
                f"{len(optimizers)}; train the other networks without the callback"
            )
        schedules = [t.name for t in self.injector.active if _uses(t, "learning_rate")]
        if schedules and trainer.lr_scheduler_configs:
            raise ConfigError(
                f"techniques.{schedules[0]}",
                "on",
                "sets the learning rate every epoch, and so does the LR scheduler "
                "configure_optimizers returns; keep one of them",
            )
        if not self._is_set_up:
            self._set_up(trainer, pl_module)
        optimizer = optimizers[0]
        params = self._params(pl_module, optimizer)
        if isinstance(optimizer, PerturbedOptimizer):
            # After restore() and m-RWP's mixing, right before the step at w.
            stepper = optimizer.base_optimizer
            self._step_hooks.append(
                stepper.register_step_pre_hook(lambda *_: self.injector.before_step(params))
            )
        else:
            stepper = optimizer
        self._step_hooks.append(stepper.register_step_post_hook(lambda *_: self._end_step()))

    def _set_up(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        num_classes = self.num_classes or getattr(pl_module, "num_classes", None) or 0
        needs_classes = [t.name for t in self.injector.active if t.name.startswith("label_")]
        if needs_classes and num_classes < 2:
            raise ConfigError(
                f"techniques.{needs_classes[0]}",
                "on",
                "needs the number of classes: pass RandomnessCallback(..., num_classes=K) or "
                "give the LightningModule a `num_classes` attribute",
            )
        train_size = self.train_size
        if train_size is None:
            dataset = getattr(trainer.train_dataloader, "dataset", None)
            train_size = len(dataset) if hasattr(dataset, "__len__") else 0  # type: ignore[arg-type]
        epochs = trainer.max_epochs if trainer.max_epochs is not None else 0
        self.injector.setup(
            pl_module,
            num_classes=num_classes,
            train_size=train_size,
            epochs=max(epochs, 0),
            input_shape=self.input_shape,
        )
        if self._pending_state is not None:
            self.injector.load_state_dict(self._pending_state)
            self._pending_state = None
        self._is_set_up = True

    @staticmethod
    def _params(pl_module: nn.Module, optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
        """The optimizer's parameters in module order (the order dicelab's trainer passes, so
        the techniques draw the same numbers)."""
        ids = {id(p) for group in optimizer.param_groups for p in group["params"]}
        return [p for p in pl_module.parameters() if id(p) in ids]

    def _end_step(self) -> None:
        self.injector.end_step()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The epoch's learning rate (``lr_schedule``)."""
        if self.injector.active:
            self.injector.start_epoch(trainer.current_epoch, trainer.optimizers[0])

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._data_calls = self._loss_calls = 0

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Stop the run if a DATA or LOSS technique's stage was never called (no silent
        no-op)."""
        for names, calls, call in (
            (self._data_techniques, self._data_calls, "x, y = self.randomness.data(x, y)"),
            (self._loss_techniques, self._loss_calls, "self.randomness.loss(logits, y)"),
        ):
            if names and not calls:
                raise RuntimeError(
                    f"RandomnessCallback: {', '.join(names)} act(s) in a stage training_step "
                    f"never called: call `{call}` in training_step (RandomnessModule), or turn "
                    "the technique off"
                )

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """GRAD then WEIGHT techniques on the gradients about to be applied (a perturbation
        optimizer runs them from its base optimizer's step instead: Lightning calls this hook
        after each of its passes, before the update gradient exists)."""
        if self.injector.active and not isinstance(optimizer, PerturbedOptimizer):
            self.injector.before_step(self._params(pl_module, optimizer))

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The injector's state (step counters, streams, technique state)."""
        if not self._is_set_up:
            return dict(self._pending_state or {})
        return self.injector.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (applied once the techniques are set up)."""
        if not state_dict:
            return
        if self._is_set_up:
            self.injector.load_state_dict(state_dict)
        else:
            self._pending_state = state_dict


class RandomnessModule(pl.LightningModule):
    """A ``LightningModule`` with dicelab's DATA and LOSS stages and perturbation updates.

    ``self.randomness`` is the :class:`RandomnessCallback` of the current ``Trainer``, or
    without one the stages with no techniques (the batch as is, plain per-example
    cross-entropy), so the same module trains with or without the callback.
    """

    randomness: RandomnessCallback | _Off = _Off()

    def perturbation_step(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        reduction: Literal["mean", "sum"] = "mean",
    ) -> torch.Tensor:
        """This batch's update under manual optimization; returns the (detached) loss.

        With a :class:`~dicelab.optim.PerturbedOptimizer` it takes the optimizer's passes as
        dicelab's trainer does: a clean pass first when the perturbation needs the gradient
        at ``w`` (SAM, ASAM, m-RWP on one batch), then the pass at ``w + ε`` (BatchNorm
        running statistics frozen on it when the update has a clean pass), then the step at
        ``w``; m-RWP on consecutive batches spends one pass per batch and updates on every
        second batch. The loss returned is that of the first pass. With a plain optimizer it
        is one ``zero_grad / forward / backward / step``.

        Args:
            inputs: the batch after the DATA stage (``self.randomness.data``).
            targets: hard ``(B,)`` or soft ``(B, K)`` targets from the DATA stage.
            reduction: how the per-example losses become the batch loss.
        """
        if self.automatic_optimization:
            raise RuntimeError(
                "perturbation_step() drives the optimizer itself: set "
                "`self.automatic_optimization = False` in the module's __init__"
            )
        optimizer = self.optimizers()
        if isinstance(optimizer, list):
            raise RuntimeError(
                f"perturbation_step() drives one optimizer; configure_optimizers returned "
                f"{len(optimizer)}"
            )
        raw = optimizer.optimizer

        def one_pass() -> torch.Tensor:
            freeze = isinstance(raw, PerturbedOptimizer) and raw.perturbed and raw.takes_clean_pass
            with frozen_bn_stats(self) if freeze else nullcontext():
                per_example = self.randomness.loss(self(inputs), targets)
            loss = per_example.sum() if reduction == "sum" else per_example.mean()
            self.manual_backward(loss)
            return loss.detach()

        if not isinstance(raw, PerturbedOptimizer):
            optimizer.zero_grad(set_to_none=True)
            loss = one_pass()
            optimizer.step()
            return loss

        def closure() -> torch.Tensor:
            raw.zero_grad(set_to_none=True)
            return one_pass()

        # Lightning wraps the closure (its on_before_optimizer_step hooks run after each pass)
        # and counts one optimizer step per batch; the optimizer runs the cycle.
        result = optimizer.step(closure=closure)
        assert isinstance(result, torch.Tensor)
        return result
