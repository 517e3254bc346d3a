"""The reference trainer: in-memory mini-batches, per-example losses, resumable runs.

One training step, in the authors' order: take the batch's examples (uint8 on the device) and
convert them to float → DATA techniques (augmentation, input noise, labels) → forward (MODEL
techniques act inside through hooks) → per-example cross-entropy (B,) × LOSS techniques →
reduce (``sum`` as the authors' Keras code differentiates, or ``mean``) → backward → GRAD
techniques (gradient dropout → frozen weights → gradient noise) → WEIGHT techniques → optimizer
step (gradient clipping, if on, first). At each epoch start the batch-size schedule sets the
batch size and the shuffle technique (if on) draws the order. Before every batch the
learning-rate schedule (:mod:`dicelab.optim.schedule`) sets the rate of the update the batch
contributes to, and the ``lr_schedule`` technique doubles or halves it for the epoch. The
techniques run through the same public :class:`~dicelab.techniques.Injector` a user's own loop
would use.

A run folder holds ``config.yaml`` (the resolved configuration), ``metrics.jsonl`` (one line per
epoch), ``checkpoint.pt`` (written atomically after every epoch), ``model.pt`` (final weights)
and ``result.json``; a run claims its folder for as long as it runs
(:mod:`dicelab.train.rundir`), so two processes never write one folder. ``fit(resume=True)``
continues from the checkpoint and reaches the same final weights as an uninterrupted run, bit
for bit on CPU, because every random stream's state is checkpointed with the weights.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import dicelab
from dicelab import _atomic
from dicelab.config import RunConfig, config_hash, load_config, to_dict, to_yaml
from dicelab.data import DataBundle, Split, load_data, to_float
from dicelab.exceptions import ConfigError, DicelabError, RunError
from dicelab.models import build_model
from dicelab.models.batchnorm import frozen_bn_stats, recalibrate_batchnorm, stale_weight
from dicelab.optim import PerturbedOptimizer, build_optimizer
from dicelab.optim.distributed import broadcast_buffers, init_process_group, world_from_env
from dicelab.optim.schedule import learning_rate, run_length
from dicelab.rng import derive_seed, isolated_global_rng
from dicelab.techniques import Injector
from dicelab.techniques import _fused as fused
from dicelab.tracking import Trackers, check_trackers, flat_params, open_trackers
from dicelab.train.rundir import RunDirClaim, claim_run_dir, reporting_os_errors

_log = logging.getLogger(__name__)

#: ``train.precision`` → the autocast dtype (``None``: plain fp32, no autocast).
_AUTOCAST: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}

CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
METRICS = "metrics.jsonl"
CONFIG = "config.yaml"
FINAL_WEIGHTS = "model.pt"

# Steps between divergence checks: each check syncs with the device, so it is not every step.
_FINITE_CHECK_EVERY = 16

#: ``train.recalibrate_bn: auto`` recalibrates while the BatchNorm running statistics still give
#: more than this weight to their starting values (:func:`stale_weight`): 44 updates with the
#: pytorch preset, 459 with keras. After that the exponential average has forgotten the
#: untrained network, and evaluating with it costs nothing extra.
STALE_LIMIT = 0.01
#: Training examples (evenly spaced over the training set) that ``auto`` recalibrates on, so
#: its cost is bounded whatever the data size: a forward pass over 2048 examples.
AUTO_RECALIBRATION_EXAMPLES = 2048


@dataclass
class RunResult:
    """What a finished (or stopped) run reports; written to ``result.json``."""

    status: str  # "completed", "diverged" or "stopped" (by an on_epoch callback)
    epochs_completed: int
    last_val_acc: float | None
    best_val_acc: float | None
    best_epoch: int | None
    test_acc: float | None
    test_loss: float | None
    updates: int
    examples_seen: int
    wall_time_s: float
    config_hash: str
    git_commit: str | None
    dicelab_version: str
    torch_version: str
    device: str
    message: str = ""
    # Inputs besides the configuration and seed that change the numbers (see environment()).
    torch_threads: int | None = None
    python_version: str | None = None
    numpy_version: str | None = None
    torch_cuda: str | None = None
    torch_blas: str | None = None
    cpu_capability: str | None = None
    fused_draws: bool | None = None


def environment() -> dict[str, Any]:
    """What, besides the configuration and seed, changes a run's numbers on this machine:
    torch's intra-op thread count (how reductions are split), and the versions and builds
    of the numeric stack (kernels, BLAS, the SIMD level torch dispatches to), and whether
    activation noise and DropConnect draw with dicelab's fused kernels or with torch."""
    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=([^,\s]+)", config)
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return {
        "torch_threads": torch.get_num_threads(),
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "torch_cuda": torch.version.cuda,
        "torch_blas": blas.group(1) if blas else None,
        "cpu_capability": capability() if capability is not None else None,
        "fused_draws": fused.in_use(),
    }


def resolve_device(name: str) -> torch.device:
    """The torch device for a configuration's ``device`` value."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "CUDA is not available here; use cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", name, "MPS is not available here; use cpu or auto")
    return device


def git_commit() -> str | None:
    """The commit of the dicelab source tree, with ``-dirty`` if it has local changes."""
    source = Path(dicelab.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


class Trainer:
    """Trains one configuration; optionally records everything in a run folder.

    Args:
        config: the validated run configuration.
        run_dir: folder for config, metrics, checkpoints and result; ``None`` writes nothing.
        progress: show a progress bar with ETA on stderr.
        log: called with one line per epoch (and notices); ``None`` is silent.
        track_root: where the experiment trackers of ``config.log`` write (default: the run
            folder; a run without a folder is not tracked).
        track_run: the run's name and sub-folder under ``track_root`` when several runs share
            it (``evaluate``'s retraining runs); default: the run folder's name.

    Example:
        >>> from dicelab.config import load_config
        >>> cfg = load_config(overrides=["train.epochs=1", "data.train_limit=64", "device=cpu"])
        >>> result = Trainer(cfg).fit()
        >>> result.status
        'completed'
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        run_dir: str | Path | None = None,
        progress: bool = False,
        log: Callable[[str], None] | None = None,
        track_root: str | Path | None = None,
        track_run: str | None = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.track_root = Path(track_root) if track_root is not None else None
        self.track_run = track_run
        if self.run_dir is not None:
            check_trackers(config.log)  # a missing package stops here, before any work
        self._trackers: Trackers | None = None
        self.progress = progress
        self.log = log or (lambda _line: None)
        self.device = resolve_device(config.device)
        self.rank, self.world_size = 0, 1
        if world_from_env() is not None:  # one process of a torchrun job: parallel m-RWP
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            self.rank, self.world_size = init_process_group(self.device)
        self.config_hash = config_hash(config)
        d = config.data
        self.data: DataBundle = load_data(
            d.name,
            root=d.root,
            download=d.download,
            split=d.split,
            val_fraction=d.val_fraction,
            train_limit=d.train_limit,
        ).to(self.device)
        with isolated_global_rng(derive_seed(config.seed, "model_init")):
            model = build_model(
                config.model.name,
                input_shape=self.data.input_shape,
                num_classes=self.data.num_classes,
                batchnorm=config.model.batchnorm,
                options=config.model.options,
            )
        self.model: nn.Module = model.to(self.device)
        speed = config.train
        self.channels_last = speed.channels_last is True or (
            speed.channels_last == "auto"
            and any(isinstance(m, nn.Conv2d) for m in self.model.modules())
        )
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        #: The dtype the forward pass autocasts to under ``train.precision`` (None: fp32).
        self.autocast_dtype = _AUTOCAST[speed.precision]
        if speed.precision == "fp16" and config.optimizer.perturbation != "none":
            raise ConfigError(
                "train.precision",
                "fp16",
                "takes no perturbation optimizer (their noise and ascent read the loss-scaled "
                "gradients): use bf16, or optimizer.perturbation=none",
            )
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none.
        self.scaler = torch.amp.GradScaler(self.device.type) if speed.precision == "fp16" else None
        if speed.compile:
            self.model.compile()  # in place: parameter names and state_dict keys stay the same
        # Under torchrun each rank draws its own per-example randomness (dropout masks,
        # augmentation, ...) and shares the draws that define the model, the data order and
        # the step (see dicelab.techniques._base).
        self.injector = Injector.from_config(config.techniques, seed=config.seed, rank=self.rank)
        self.injector.setup(
            self.model,
            num_classes=self.data.num_classes,
            train_size=len(self.data.train),
            epochs=config.train.epochs,
            input_shape=self.data.input_shape,
        )
        planned = self.planned_updates()
        self.optimizer = build_optimizer(
            config.optimizer,
            self.model,
            total_steps=planned,
            seed=derive_seed(config.seed, "perturbation"),
            distributed=self.world_size > 1,
        )
        # Intervals of the learning-rate schedule (updates or epochs) in the whole run.
        self._schedule_length = run_length(
            config.schedule, updates=planned, epochs=config.train.epochs
        )
        self.epoch = 0
        self.updates = 0
        self.examples_seen = 0
        self.history: list[dict[str, Any]] = []
        self.elapsed = 0.0
        self._global_rng: torch.Tensor | None = None
        self._global_rng_cuda: torch.Tensor | None = None
        self._claim: RunDirClaim | None = None  # the run folder's, while fit runs
        # train.epochs of the run folder's config.yaml when it differs (a run being extended).
        self._saved_epochs: tuple[int, ...] = ()
        # The update count at which the BatchNorm statistics were last recalibrated: the
        # same weights give the same statistics, so a second evaluation there (validation,
        # then test) reuses them.
        self._recalibrated_at: int | None = None

    def _batches_per_epoch(self) -> list[int]:
        """Mini-batches this process trains on in each epoch (the batch-size schedule may
        change them; under torchrun each rank takes one batch of every group of
        ``world_size``, and an incomplete last group is left out)."""
        cfg = self.config.train
        counts = [
            math.ceil(len(self.data.train) / self.injector.batch_size(cfg.batch_size, epoch))
            for epoch in range(cfg.epochs)
        ]
        return [count // self.world_size for count in counts]

    def planned_updates(self) -> int:
        """Optimizer updates in the whole run (half the batches for m-RWP on consecutive
        batches, which spends two batches per update)."""
        batches = sum(self._batches_per_epoch())
        opt = self.config.optimizer
        consecutive = opt.perturbation in ("mrwp", "marwp") and opt.mix_batches == "consecutive"
        if consecutive and self.world_size == 1:
            return max(1, batches // 2)
        return batches

    # -- one epoch ------------------------------------------------------------------------

    def _batches(
        self, split: Split, batch_size: int, order: torch.Tensor | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Mini-batches of ``split``: float inputs, labels and dataset indices, in ``order``
        (a permutation) or in stored order."""
        if order is None:
            order = torch.arange(len(split), device=self.device)
        for start in range(0, len(split), batch_size):
            idx = order[start : start + batch_size]
            yield to_float(split.x[idx]), split.y[idx], idx

    def _backward(
        self, inputs: torch.Tensor, targets: torch.Tensor, *, freeze_bn: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, per-example loss × LOSS techniques, reduction, backward; (logits, losses)."""
        with frozen_bn_stats(self.model) if freeze_bn else nullcontext(), self._autocast():
            logits = self.model(inputs)
            per_example = self.injector.loss(logits, targets)  # (B,), float32 under autocast
            sum_up = self.config.train.reduction == "sum"
            loss = per_example.sum() if sum_up else per_example.mean()
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()
        return logits, per_example

    def _autocast(self) -> Any:
        """The mixed-precision context of ``train.precision`` (nothing for fp32)."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _step(self) -> None:
        """The optimizer step, after the GRAD and WEIGHT techniques; under fp16 the gradients
        are unscaled first, so techniques and clipping see their true values, and a step with
        an overflowed gradient is skipped (the GradScaler lowers its scale)."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        self.injector.before_step(self.model.parameters())
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()

    def _gradient(
        self, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This batch's pass(es) for the optimizer; the logits and losses of the first.

        A plain optimizer takes one pass at ``w``. A perturbation optimizer takes its pass at
        ``w + ε`` (after a clean pass first when its perturbation needs the gradient: SAM,
        m-RWP on one batch); BatchNorm running statistics are frozen on a perturbed pass when
        the update also has a clean one.
        """
        opt = self.optimizer
        opt.zero_grad(set_to_none=True)
        if not isinstance(opt, PerturbedOptimizer):
            return self._backward(inputs, targets)
        first = None
        if opt.needs_gradient_to_perturb:
            first = self._backward(inputs, targets)
        opt.perturb()
        second = self._backward(inputs, targets, freeze_bn=opt.perturbed and opt.takes_clean_pass)
        return first or second

    def _update_ready(self) -> bool:
        """Whether the gradients now hold an update (always, except on the clean batch of
        m-RWP on consecutive batches); restores perturbed weights first."""
        opt = self.optimizer
        return opt.restore() if isinstance(opt, PerturbedOptimizer) else True

    def _train_batches(
        self, batch_size: int, order: torch.Tensor | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
        """This process's training batches and the examples each step consumes in total.

        Alone, every batch. Under torchrun, batches come in groups of ``world_size``
        consecutive ones and rank ``r`` takes the ``r``-th of each group (with two ranks:
        rank 0 the even batches, rank 1 the odd ones, as m-RWP on consecutive batches).
        """
        train = self.data.train
        if self.world_size == 1:
            for x, y, idx in self._batches(train, batch_size, order):
                yield x, y, idx, len(y)
            return
        group: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for batch in self._batches(train, batch_size, order):
            group.append(batch)
            if len(group) == self.world_size:
                x, y, idx = group[self.rank]
                yield x, y, idx, sum(len(b[1]) for b in group)
                group = []

    def train_epoch(self, bar: tqdm | None = None) -> dict[str, float] | None:
        """One pass over the training set; the epoch's metrics, or ``None`` if it diverged."""
        train = self.data.train
        injector = self.injector
        batch_size = injector.start_epoch(self.epoch, base_batch_size=self.config.train.batch_size)
        assert batch_size is not None  # a base size was given
        order = injector.data_order(len(train))
        if order is not None:
            order = order.to(self.device)
        self.model.train()
        # loss sum, correct predictions, examples: this process's, summed over ranks at the end
        totals = torch.zeros(3, device=self.device)
        alone = self.world_size == 1
        for step, (x, y, idx, consumed) in enumerate(self._train_batches(batch_size, order), 1):
            self._set_learning_rate()
            inputs, targets = injector.data(x, y, idx)
            logits, per_example = self._gradient(inputs, targets)
            if self._update_ready():
                self._step()
                injector.end_step()
                self.updates += 1
                if not alone:
                    broadcast_buffers(self.model)  # rank 0's (clean) BatchNorm statistics
            self.examples_seen += consumed
            totals[0] += per_example.detach().sum()
            totals[1] += (logits.detach().argmax(1) == y).sum()
            totals[2] += len(y)
            if bar is not None:
                bar.update(1)
            # Ranks decide together (at the epoch's end) so that none waits for a quitter.
            if alone and step % _FINITE_CHECK_EVERY == 0 and not torch.isfinite(totals[0]):
                return None
        if not alone:
            dist.all_reduce(totals)
        if not torch.isfinite(totals[0]):
            return None
        loss_sum, correct, examples = totals.tolist()
        return {"train_loss": loss_sum / examples, "train_acc": correct / examples}

    def _set_learning_rate(self) -> None:
        """Give the update the next batch contributes to its rate: the schedule's rate for
        that update (or epoch), doubled or halved by the ``lr_schedule`` technique for this
        epoch (the schedule sets the base rate the gene scales). It depends only on the update
        count and the epoch, which a checkpoint holds, so a resumed run gets the same rates."""
        schedule = self.config.schedule
        index = self.updates if schedule.interval == "step" else self.epoch
        rate = learning_rate(schedule, self.config.optimizer.lr, index, self._schedule_length)
        rate = self.injector.learning_rate(rate, self.epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def _recalibration_batches(self, limit: int | None = None) -> Iterator[torch.Tensor]:
        """Training inputs in equal batches of ``train.batch_size`` (fewer when the set is
        smaller): BatchNorm's cumulative average weights every batch alike, so the examples
        of an incomplete last batch are left out.

        Without ``limit``: the whole training set in stored order. With it: at most ``limit``
        examples spaced evenly over the training set, so a set stored in label order still
        gives every class its share, and the cost does not grow with the data.
        """
        size = len(self.data.train)
        count = size if limit is None else min(limit, size)
        batch = min(self.config.train.batch_size, count)
        count -= count % batch
        order = torch.arange(count, device=self.device)
        if limit is not None:
            order = order * size // count
        for start in range(0, count, batch):
            yield to_float(self.data.train.x[order[start : start + batch]])

    def _recalibrates(self) -> bool:
        """Whether the next evaluation recomputes the BatchNorm statistics first: always for
        ``true``, never for ``false``; for ``auto`` while :func:`stale_weight` is above
        :data:`STALE_LIMIT`. The decision depends only on the model's momenta and the update
        count, which a checkpoint restores, so a resumed run decides the same."""
        setting = self.config.train.recalibrate_bn
        if self._recalibrated_at == self.updates or setting is False:
            return False
        return setting is True or stale_weight(self.model, self.updates) > STALE_LIMIT

    @torch.no_grad()
    def evaluate(self, split: Split) -> tuple[float, float]:
        """Mean cross-entropy and accuracy on ``split`` in evaluation mode.

        The BatchNorm statistics are recalibrated first as ``train.recalibrate_bn`` says
        (:meth:`_recalibrates`). They stay recalibrated: the checkpoint and final weights hold
        them, and training goes on from them. That changes no weight, since training
        normalises with each batch's own statistics.
        """
        if self._recalibrates():
            limit = (
                None if self.config.train.recalibrate_bn is True else AUTO_RECALIBRATION_EXAMPLES
            )
            # the statistics of the clean network, in the arithmetic training uses
            with self.injector.paused(), self._autocast():
                recalibrate_batchnorm(self.model, self._recalibration_batches(limit))
            self._recalibrated_at = self.updates
        was_training = self.model.training
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        for x, y, _ in self._batches(split, self.config.train.eval_batch_size, None):
            with self._autocast():
                logits = self.model(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
        self.model.train(was_training)
        return loss_sum.item() / len(split), correct.item() / len(split)

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly: weights, optimizer, RNG states.

        Under torchrun every rank must call it (it gathers each rank's technique streams, kept
        under ``techniques["rank_streams"]``, indexed by rank); the rest is rank 0's, which
        every rank shares."""
        techniques = self.injector.state_dict()
        if self.world_size > 1:
            rank_streams: list[Any] = [None] * self.world_size
            dist.all_gather_object(rank_streams, techniques["streams"])
            techniques["rank_streams"] = rank_streams
        return {
            "epoch": self.epoch,
            "updates": self.updates,
            "examples_seen": self.examples_seen,
            "elapsed": self.elapsed,
            "history": self.history,
            "config_hash": self.config_hash,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "techniques": techniques,
            "grad_scaler": None if self.scaler is None else self.scaler.state_dict(),
            "global_rng": torch.get_rng_state(),
            "global_rng_cuda": (
                torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
            ),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state saved by :meth:`state_dict` (the global RNG on the next fit)."""
        if not self._continues(state["config_hash"], int(state["epoch"])):
            self._require_same_config(state["config_hash"], "the checkpoint")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.injector.load_state_dict(self._rank_technique_state(state["techniques"]))
        if self.scaler is not None:
            self.scaler.load_state_dict(state["grad_scaler"])
        self.epoch = state["epoch"]
        self.updates = state["updates"]
        self.examples_seen = state["examples_seen"]
        self.elapsed = state["elapsed"]
        self.history = list(state["history"])
        self._global_rng = state["global_rng"]
        self._global_rng_cuda = state.get("global_rng_cuda")
        self._recalibrated_at = None

    def _rank_technique_state(self, techniques: dict[str, Any]) -> dict[str, Any]:
        """The injector state of this rank: under torchrun, with its own streams.

        Raises:
            RunError: the checkpoint was written by another number of processes.
        """
        saved = techniques.get("rank_streams")
        ranks = 1 if saved is None else len(saved)
        if ranks != self.world_size:
            raise RunError(
                f"the checkpoint was written by {ranks} process(es) and this run has "
                f"{self.world_size}: resume with the same number of processes "
                "(torchrun --nproc-per-node), or start a new run folder with --out"
            )
        if saved is None:
            return techniques
        return {**techniques, "streams": saved[self.rank]}

    def _continues(self, saved_hash: str, epochs_done: int) -> bool:
        """Whether a checkpoint of ``saved_hash`` after ``epochs_done`` epochs continues into
        this run exactly: the same configuration but for ``train.epochs`` (at least the epochs
        done; the planned total of the run being continued, from its config.yaml, or any
        count up to this run's), on a schedule that does not depend on the run's length.

        Raises:
            RunError: the checkpoint is of this configuration but for ``train.epochs`` and
                cannot be continued exactly (one line saying why).
        """
        if saved_hash == self.config_hash:
            return True
        planned = self.config.train.epochs
        counts = {*range(max(epochs_done, 1), planned + 1), *self._saved_epochs}
        if saved_hash not in {config_hash(with_epochs(self.config, n)) for n in counts}:
            return False
        self._refuse_if_inexact(epochs_done)
        return True

    def _refuse_if_inexact(self, epochs_done: int) -> None:
        """Raise RunError unless a run of this configuration but for ``train.epochs``, after
        ``epochs_done`` epochs, continues into this one exactly."""
        planned = self.config.train.epochs
        problem = length_dependence(self.config)
        if epochs_done > planned:
            problem = f"it has already trained {epochs_done} epochs"
        if problem:
            raise RunError(
                f"cannot continue {self.run_dir or 'the run'} to train.epochs={planned} exactly: "
                f"{problem}; start a new run folder with --out"
            )

    def _require_same_config(self, saved_hash: str | None, source: str) -> None:
        if saved_hash != self.config_hash:
            raise RunError(
                f"{source} was written by a different configuration; resume with the run's own "
                f"config.yaml (-c {self.run_dir / CONFIG if self.run_dir else CONFIG}) or start "
                "a new run folder with --out"
            )

    def _prepare_run_dir(self, resume: bool) -> None:
        """Claim the run folder (held until :meth:`fit` returns), then, under the claim,
        check what it holds, load a checkpoint to resume and write the configuration."""
        assert self.run_dir is not None
        self._claim = claim_run_dir(self.run_dir)
        stale = _atomic.remove_stale_temps(self.run_dir)
        if stale:
            self.log(f"removed {len(stale)} temporary file(s) left by killed writers")
        checkpoint = self.run_dir / CHECKPOINT
        saved_config = self.run_dir / CONFIG
        if resume and saved_config.is_file():
            try:
                saved: RunConfig | None = load_config(saved_config)
            except DicelabError:
                saved = None
            saved_hash = None if saved is None else config_hash(saved)
            if saved is not None and saved_hash != self.config_hash:
                planned = self.config.train.epochs
                if config_hash(with_epochs(saved, planned)) == self.config_hash:
                    # Only train.epochs differs (dicelab train --resume --set train.epochs=N).
                    self._saved_epochs = (saved.train.epochs,)
                    self._refuse_if_inexact(0)
                    saved_hash = self.config_hash
            self._require_same_config(saved_hash, str(saved_config))
        if resume and checkpoint.is_file():
            self.load_state_dict(load_checkpoint(checkpoint, self.device))
            self.log(f"resuming {self.run_dir} after epoch {self.epoch}")
        elif not resume and any(
            (self.run_dir / name).exists() for name in (CHECKPOINT, RESULT, METRICS)
        ):
            raise RunError(
                f"{self.run_dir} already holds a run; pass --resume to continue it, or choose "
                "another folder with --out"
            )
        if resume and self._saved_epochs:
            self.log(
                f"continuing {self.run_dir} from train.epochs={self._saved_epochs[0]} to "
                f"{self.config.train.epochs}"
            )
            for name in (RESULT, FINAL_WEIGHTS):  # the shorter run's: written anew at the end
                (self.run_dir / name).unlink(missing_ok=True)
        with reporting_os_errors(self.run_dir / CONFIG):
            _atomic.write_text(self.run_dir / CONFIG, to_yaml(self.config))
        self._write_metrics()

    @property
    def _writes(self) -> bool:
        """Whether this process writes the run folder (under torchrun: rank 0 only)."""
        return self.run_dir is not None and self.rank == 0

    def _join_run_dir(self, resume: bool) -> None:
        """Under torchrun: rank 0 prepares the run folder (checks, config, resume), then the
        other ranks load the same checkpoint; a failure on rank 0 stops every rank."""
        problem = ""
        if self.rank == 0:
            try:
                self._prepare_run_dir(resume)
            except DicelabError as err:
                problem = str(err)
        verdict = [problem]
        dist.broadcast_object_list(verdict, src=0)
        if verdict[0]:
            raise RunError(verdict[0] if self.rank == 0 else f"rank 0: {verdict[0]}")
        assert self.run_dir is not None
        if self.rank != 0 and resume and (self.run_dir / CHECKPOINT).is_file():
            self.load_state_dict(load_checkpoint(self.run_dir / CHECKPOINT, self.device))

    def _write_metrics(self) -> None:
        if self._writes:
            assert self.run_dir is not None
            lines = "".join(_json_line(row) for row in self.history)
            with reporting_os_errors(self.run_dir / METRICS):
                _atomic.write_text(self.run_dir / METRICS, lines)

    # -- the run --------------------------------------------------------------------------

    def fit(
        self,
        *,
        resume: bool = False,
        on_epoch: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> RunResult:
        """Train for the configured epochs (continuing a checkpoint if ``resume``).

        ``on_epoch`` sees each epoch's metrics row once it is recorded; returning a reason
        (a non-empty string) stops the run there with status ``"stopped"`` and that message
        (a search's pruning or divergence guard, say).
        """
        try:
            if self.run_dir is not None:
                if self.world_size == 1:
                    self._prepare_run_dir(resume)
                else:
                    self._join_run_dir(resume)
                finished = finished_result(self.run_dir, self.config_hash) if resume else None
                if finished is not None:  # nothing left to train: report it, rewrite nothing
                    return finished
            self._trackers = self._start_trackers()
            global_seed = derive_seed(self.config.seed, "torch_global")
            with isolated_global_rng(global_seed, self.device):
                if self._global_rng is not None:
                    torch.set_rng_state(self._global_rng)
                if self._global_rng_cuda is not None:
                    torch.cuda.set_rng_state(self._global_rng_cuda, self.device)
                return self._fit(on_epoch)
        except BaseException as err:
            if self._trackers:
                self._trackers.end(
                    "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
                )
            raise
        finally:
            if self._claim is not None:
                self._claim.release()
                self._claim = None

    def _start_trackers(self) -> Trackers | None:
        """Open and start the trackers of ``config.log`` (rank 0 of a run with a folder)."""
        if self.config.log and self.run_dir is None:
            _log.warning(
                "log=%s records nothing: a run without a folder is not tracked; give it one "
                "(--out, out= or run_dir=)",
                list(self.config.log),
            )
        if not (self._writes and self.config.log):
            return None
        assert self.run_dir is not None
        trackers = open_trackers(
            self.config.log, self.track_root or self.run_dir, run=self.track_run
        )
        params = flat_params(to_dict(self.config)) | {"config_hash": self.config_hash}
        trackers.start(self.track_run or self.run_dir.name, params)
        return trackers

    def _fit(self, on_epoch: Callable[[dict[str, Any]], str | None] | None) -> RunResult:
        cfg = self.config.train
        steps = self._batches_per_epoch()
        status, message = "completed", ""
        with tqdm(
            total=sum(steps),
            initial=sum(steps[: self.epoch]),
            disable=not self.progress,
            unit="step",
            dynamic_ncols=True,
            desc=f"{self.config.data.name}/{self.config.model.name}",
        ) as bar:
            say = tqdm.write if self.progress else self.log
            while self.epoch < cfg.epochs:
                start = time.perf_counter()
                kept_counters = (self.updates, self.examples_seen)
                metrics = self.train_epoch(bar)
                if metrics is not None and self.data.val is not None:
                    metrics["val_loss"], metrics["val_acc"] = self.evaluate(self.data.val)
                problem = _divergence(metrics, self.model)
                if problem:
                    self.updates, self.examples_seen = kept_counters
                    status = "diverged"
                    message = (
                        f"{problem} in epoch {self.epoch + 1}; the last finite state "
                        f"(epoch {self.epoch}) is kept"
                    )
                    say(message)
                    break
                assert metrics is not None  # _divergence reported a missing epoch above
                self.epoch += 1
                seconds = time.perf_counter() - start
                self.elapsed += seconds
                row = {
                    "epoch": self.epoch,
                    **metrics,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "updates": self.updates,
                    "examples_seen": self.examples_seen,
                    "epoch_time_s": seconds,
                    "time_s": self.elapsed,
                }
                self.history.append(row)
                if self.run_dir is not None:
                    state = self.state_dict()  # under torchrun every rank's: it gathers
                    if self._writes:
                        with reporting_os_errors(self.run_dir / CHECKPOINT):
                            _atomic.torch_save(self.run_dir / CHECKPOINT, state)
                        self._write_metrics()
                if self._trackers:  # after the run's own files: they are the record
                    metrics = {k: v for k, v in row.items() if k != "epoch"}
                    self._trackers.log_metrics(metrics, self.epoch)
                bar.set_postfix(_postfix(row))
                say(_epoch_line(row, cfg.epochs))
                reason = on_epoch(row) if on_epoch is not None else None
                if reason and self.epoch < cfg.epochs:
                    status, message = "stopped", reason
                    say(f"stopped after epoch {self.epoch}: {reason}")
                    break
        return self._finish(status, message)

    def _finish(self, status: str, message: str) -> RunResult:
        test_loss = test_acc = None
        if status == "completed":
            test_loss, test_acc = self.evaluate(self.data.test)
            if not math.isfinite(test_loss):  # JSON has no NaN; the accuracy still stands
                test_loss = None
        val_rows = [row for row in self.history if "val_acc" in row]
        best = max(val_rows, key=lambda row: row["val_acc"], default=None)
        result = RunResult(
            status=status,
            epochs_completed=self.epoch,
            last_val_acc=val_rows[-1]["val_acc"] if val_rows else None,
            best_val_acc=best["val_acc"] if best else None,
            best_epoch=best["epoch"] if best else None,
            test_acc=test_acc,
            test_loss=test_loss,
            updates=self.updates,
            examples_seen=self.examples_seen,
            wall_time_s=self.elapsed,
            config_hash=self.config_hash,
            git_commit=git_commit(),
            dicelab_version=dicelab.__version__,
            torch_version=torch.__version__,
            device=str(self.device),
            message=message,
            **environment(),
        )
        if self._writes:
            assert self.run_dir is not None
            if status == "completed":
                with reporting_os_errors(self.run_dir / FINAL_WEIGHTS):
                    _atomic.torch_save(self.run_dir / FINAL_WEIGHTS, self.model.state_dict())
            with reporting_os_errors(self.run_dir / RESULT):
                _atomic.write_json(self.run_dir / RESULT, asdict(result))
        if self._trackers:
            self._trackers.log_result(asdict(result))
            self._trackers.end(status)
        return result


def with_epochs(config: RunConfig, epochs: int) -> RunConfig:
    """``config`` with ``train.epochs`` set to ``epochs`` (a copy)."""
    return replace(config, train=replace(config.train, epochs=epochs))


def length_dependence(config: RunConfig) -> str | None:
    """What in ``config`` depends on the planned number of epochs or updates, so that a run
    continued to another ``train.epochs`` would not be the run started with it; None when
    nothing does (its first epochs are the same whatever the total)."""
    if config.schedule.name == "cosine":
        return "schedule.name=cosine spreads the learning rate over the planned updates"
    opt = config.optimizer
    if opt.perturbation in ("rwp", "arwp", "mrwp", "marwp") and opt.sigma_schedule == "cosine":
        return "optimizer.sigma_schedule=cosine spreads sigma over the planned updates"
    for name in ("lr_schedule", "batch_schedule"):
        if name in config.techniques:  # on: techniques at their default are dropped
            return f"the {name} technique's period is a share of the planned epochs"
    return None


def finished_result(
    run_dir: Path, config_hash: str, statuses: tuple[str, ...] = ("completed",)
) -> RunResult | None:
    """The result of a run folder that ended the configuration with ``config_hash`` in one of
    ``statuses``, read back from its ``result.json``; None when the folder holds no such run.

    By default only a completed run counts as finished: ``dicelab train --resume`` continues a
    diverged run from its last finite checkpoint. A caller that retrains a fixed protocol
    (:func:`dicelab.tune.evaluate.retrain`) also passes ``"diverged"``: the same configuration
    and seed diverge again in the same epoch, so training it anew would only cost time.
    """
    path = run_dir / RESULT
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise RunError(
            f"cannot read {path}: {getattr(err, 'strerror', None) or err}; remove it and "
            "continue with --resume to write it again from the checkpoint"
        ) from None
    if not isinstance(saved, dict):
        saved = {}
    if saved.get("status") not in statuses or saved.get("config_hash") != config_hash:
        return None
    known = {f.name for f in fields(RunResult)}  # a result.json of another version
    return RunResult(**{key: value for key, value in saved.items() if key in known})


def load_checkpoint(path: Path, device: torch.device | str) -> Any:
    """A file written with ``torch.save`` by dicelab (a checkpoint or final weights), read
    safely (``weights_only``); a truncated or damaged file is one RunError saying so."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except OSError as err:
        if err.errno not in (None, errno.EINVAL):  # the file cannot be opened or read
            raise RunError(f"cannot read {path}: {err.strerror or err}") from None
        detail = "its archive cannot be read"  # torch's "[Errno 22] Invalid argument"
    except EOFError:
        detail = "it ends before its first record"
    except Exception as err:  # torch reports other damage in its own words
        detail = str(err).split(". ")[0].strip() or type(err).__name__
    if path.name == CHECKPOINT:
        what = (
            "remove it and continue with --resume to train the run again from the start "
            "(its metrics.jsonl keeps the epochs done), or restore it from a copy"
        )
    else:
        what = (
            f"remove it and {RESULT}, then `dicelab train -c {path.parent / CONFIG} --out "
            f"{path.parent} --resume` writes it again from the checkpoint"
        )
    raise RunError(f"{path} is truncated or damaged ({detail}, {_size(path)}); {what}") from None


def _size(path: Path) -> str:
    """A file's size in words, for messages about damaged files."""
    try:
        return f"{path.stat().st_size} bytes"
    except OSError:
        return "size unknown"


def _json_line(row: dict[str, Any]) -> str:
    return json.dumps(row, allow_nan=False) + "\n"


def _divergence(metrics: dict[str, float] | None, model: nn.Module) -> str:
    """Why an epoch counts as diverged, or ``""`` if its loss and weights are finite."""
    if metrics is None:
        return "the training loss became NaN or infinite"
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        return "the weights became NaN or infinite"
    if not math.isfinite(metrics.get("val_loss", 0.0)):
        return "the validation loss became NaN or infinite"
    return ""


def _postfix(row: dict[str, Any]) -> dict[str, str]:
    shown = {"loss": f"{row['train_loss']:.4f}", "acc": f"{row['train_acc']:.4f}"}
    if "val_acc" in row:
        shown["val_acc"] = f"{row['val_acc']:.4f}"
    return shown


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    parts = [
        f"epoch {row['epoch']}/{epochs}",
        f"loss {row['train_loss']:.4f}",
        f"acc {row['train_acc']:.4f}",
    ]
    if "val_acc" in row:
        parts += [f"val_loss {row['val_loss']:.4f}", f"val_acc {row['val_acc']:.4f}"]
    parts.append(f"{row['epoch_time_s']:.1f}s")
    return "  ".join(parts)
