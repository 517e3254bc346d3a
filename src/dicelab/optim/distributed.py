"""Parallel m-RWP / m-ARWP over torch.distributed: the two gradients on different workers.

m-RWP's update mixes a gradient at ``w + ε`` with one at ``w``; neither needs the other, so
with ``2·k`` processes the odd ranks take the perturbed gradient and the even ranks the clean
one, each on its own mini-batch, at the same time. One all-reduce of both halves gives every
rank the same mixed gradient

    g = λ · mean(perturbed ranks' gradients) + (1 − λ) · mean(clean ranks' gradients)

and every rank takes the same base-optimizer step, so the weights stay identical without
broadcasting them. SAM cannot do this: its second gradient needs the first.

With 2 processes, rank 0 on batch ``2u`` and rank 1 on batch ``2u + 1``, an update is exactly
:class:`~dicelab.optim.MRWP`'s on consecutive batches (the same noise too: perturbed rank 1 uses
the sequential stream; ranks 3, 5, ... derive their own). m-ARWP's history ``F`` is taken from
the mean perturbed gradient, identical on every rank. The all-reduce carries two gradient-sized
buffers (perturbed and clean), which keeps the k = 1 case exact. BatchNorm running statistics
are updated on the clean ranks only; the trainer copies rank 0's to every rank after each
update, as DistributedDataParallel broadcasts rank 0's buffers.

Launch with ``torchrun --nproc-per-node 2 -m dicelab train --set optimizer.perturbation=mrwp``
(gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from dicelab.exceptions import ConfigError
from dicelab.optim._base import _IDLE, _READY, PerturbationError
from dicelab.optim.mrwp import MRWP
from dicelab.rng import derive_seed

_CLEAN_PASS = "clean_pass"  # a clean rank's pass at w is under way


def world_from_env() -> tuple[int, int] | None:
    """``(rank, world_size)`` when launched by torchrun with more than one process, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return int(os.environ.get("RANK", "0")), world


def init_process_group(device: torch.device) -> tuple[int, int]:
    """Join the torchrun job's process group (NCCL for CUDA, gloo otherwise); (rank, world)."""
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


class DistributedMRWP(MRWP):
    """One rank's share of parallel m-RWP (m-ARWP with ``eta > 0``).

    Every rank runs the same loop as :class:`~dicelab.optim.MRWP` with ``batches="same"``
    minus the first pass: ``perturb()`` (a no-op on clean ranks), forward/backward on this
    rank's batch, ``step()``. Every call is an update.

    Args:
        params: parameters or parameter groups (identical on every rank).
        base_optimizer: the optimizer class that steps at ``w``.
        lam: λ, the weight of the perturbed gradients.
        seed: the run's perturbation seed (rank 1 uses it as is).
        group: the process group (the default group when None).
        **kwargs: :class:`~dicelab.optim.RWP`'s options and the base optimizer's arguments.

    Raises:
        PerturbationError: torch.distributed is not initialised.
        ConfigError: the number of processes is odd.
    """

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
        *,
        seed: int = 0,
        group: dist.ProcessGroup | None = None,
        **kwargs: Any,
    ) -> None:
        if not dist.is_initialized():
            raise PerturbationError(
                "DistributedMRWP needs torch.distributed initialised (launch with torchrun)"
            )
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        if self.world_size % 2:
            raise ConfigError(
                "WORLD_SIZE",
                self.world_size,
                "parallel m-RWP needs an even number of processes (half clean, half perturbed)",
            )
        self.perturbs = self.rank % 2 == 1
        slot = self.rank // 2  # which perturbed (or clean) worker this is
        stream = seed if slot == 0 else derive_seed(seed, "perturbed_rank", slot)
        kwargs.pop("batches", None)
        super().__init__(params, base_optimizer, batches="same", seed=stream, **kwargs)

    @property
    def needs_gradient_to_perturb(self) -> bool:
        return False

    @torch.no_grad()
    def perturb(self) -> None:
        """Perturbed ranks: save ``w`` and move to ``w + ε``; clean ranks: stay at ``w``."""
        if self.perturbs:
            super().perturb()
            return
        if self._stage != _IDLE:
            raise PerturbationError("DistributedMRWP.perturb(): call step() first")
        self.zero_grad(set_to_none=True)
        self._stage = _CLEAN_PASS

    @torch.no_grad()
    def restore(self) -> bool:
        """Restore ``w`` (perturbed ranks) and all-reduce the mixed gradient; always True."""
        if self._stage == _CLEAN_PASS:
            self._finish(self.params())
            self._stage = _READY
            return True
        return super().restore()

    def _perturb(self, params: list[nn.Parameter]) -> None:
        super(MRWP, self)._perturb(params)  # the noise only: the clean gradient is elsewhere

    def _finish_perturbed(self, params: list[nn.Parameter]) -> None:
        """F is updated from the all-reduced mean perturbed gradient, in :meth:`_finish`."""

    def _finish(self, params: list[nn.Parameter]) -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        zeros = torch.zeros_like(flat)
        both = torch.cat([flat, zeros] if self.perturbs else [zeros, flat])
        dist.all_reduce(both, group=self.group)
        both.div_(self.world_size // 2)  # sums → means (exact for one rank per side)
        perturbed, clean = both.split(flat.numel())
        if self.eta > 0:
            self._fisher = self._fisher or [torch.zeros_like(p) for p in params]
        offset = 0
        for i, p in enumerate(params):
            n = p.numel()
            g_pert = perturbed[offset : offset + n].view_as(p)
            g_clean = clean[offset : offset + n].view_as(p)
            offset += n
            if self.eta > 0:
                f = self._fisher[i]
                assert f is not None
                f.mul_(self.beta).addcmul_(g_pert, g_pert)
            p.grad = torch.lerp(g_clean, g_pert, self.lam)

    def state_dict(self) -> dict[str, Any]:
        if self._stage == _CLEAN_PASS:
            raise PerturbationError("DistributedMRWP.state_dict(): a pass is under way")
        return super().state_dict()


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm statistics) to every rank."""
    for buffer in module.buffers():
        dist.broadcast(buffer, src)
