"""The protocol shared by the weight-perturbation optimizers (SAM, RWP and their variants).

A perturbation optimizer wraps a ``torch.optim`` optimizer (the *base*): it builds the base
from a class and keyword arguments and shares its ``param_groups``, so learning-rate
schedulers and ``zero_grad`` act on both. One update takes the gradient at perturbed weights
``w + ε`` and applies it at ``w``:

    opt.perturb()            # before the forward pass: save w, move to w + ε
    loss_fn(model(x), y).backward()
    if opt.restore():        # w back from the saved copy; p.grad is the update gradient
        opt.step()           # the base optimizer's step at w

``step()`` restores by itself when needed, and ``step(closure)`` runs the whole update (the
closure zeroes the gradients, computes the loss, calls ``backward()`` and returns the loss).
Methods whose perturbation is built from the gradient at ``w`` (SAM; m-RWP on one batch) take
a first backward pass before ``perturb()``; the mixed methods on consecutive batches
(m-RWP's faithful mode) spend one ``perturb / backward / step`` round per batch, and only
every second round updates. Weights are always restored from a saved copy, never by
subtracting the perturbation, so the update is taken at exactly ``w``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from dicelab.exceptions import ConfigError, DicelabError
from dicelab.rng import derive_seed

Closure = Callable[[], torch.Tensor]

# Where an update stands between two calls.
_IDLE = "idle"  # weights at w, no gradient taken for the next update yet
_PERTURBED = "perturbed"  # weights at w + ε, waiting for the perturbed gradient
_READY = "ready"  # weights at w, p.grad holds the update gradient
_STASHED = "stashed"  # weights at w, the clean gradient is kept for the next (perturbed) batch


class PerturbationError(DicelabError, RuntimeError):
    """A perturbation optimizer was driven in an order it cannot follow."""


def check_range(
    name: str, value: float, low: float, high: float | None = None, *, open_high: bool = False
) -> float:
    """``value`` as a float if it lies in ``[low, high]`` (``[low, high)``); else ConfigError."""
    value = float(value)
    too_high = high is not None and (value >= high if open_high else value > high)
    if not math.isfinite(value) or value < low or too_high:
        if high is None:
            allowed = f"must be a finite number >= {low}"
        else:
            allowed = f"must lie in [{low}, {high}{')' if open_high else ']'}"
        raise ConfigError(name, value, allowed)
    return value


class PerturbedOptimizer(torch.optim.Optimizer):
    """Base class: a wrapped base optimizer, saved weights, a seeded stream, the update cycle.

    Subclasses implement :meth:`_perturb` (move the weights, from ``w`` saved by the base class)
    and may override :meth:`_finish` (turn the gradient at hand into the update gradient).

    Args:
        params: parameters or parameter groups, as for any ``torch.optim`` optimizer.
        base_optimizer: the optimizer class that takes the step at ``w`` (``torch.optim.SGD``).
        seed: seed of the perturbation's own random stream (the global RNG is never used).
        **kwargs: the base optimizer's arguments (``lr``, ``momentum``, ...).
    """

    #: Whether an update also uses a gradient at the unperturbed weights, so BatchNorm running
    #: statistics should be frozen on the perturbed pass (SAM, m-RWP, m-ARWP).
    takes_clean_pass: ClassVar[bool] = False

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
        *,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        is_class = isinstance(base_optimizer, type)
        if not (is_class and issubclass(base_optimizer, torch.optim.Optimizer)):
            raise ConfigError(
                "base_optimizer",
                base_optimizer,
                "must be a torch.optim.Optimizer class such as torch.optim.SGD (not an instance)",
            )
        super().__init__(params, dict(kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self.seed = int(seed)
        self.updates = 0  # base-optimizer steps taken
        self._stage = _IDLE
        self._saved: list[torch.Tensor | None] = []
        self._generators: dict[str, torch.Generator] = {}
        self._seeded_for: dict[str, int] = {}  # device → the update its generator is seeded for

    # -- what subclasses provide ----------------------------------------------------------

    @property
    def needs_gradient_to_perturb(self) -> bool:
        """Whether :meth:`perturb` reads the gradient at ``w`` (a backward pass comes first)."""
        return False

    @property
    def mixes_consecutive_batches(self) -> bool:
        """Whether one update spans two batches: a clean one, then a perturbed one."""
        return False

    def _perturb(self, params: list[nn.Parameter]) -> None:
        """Move ``params`` (saved already) to the perturbed point."""
        raise NotImplementedError

    def _finish(self, params: list[nn.Parameter]) -> None:
        """After the weights are restored: make ``p.grad`` the update gradient."""

    # -- the update cycle -----------------------------------------------------------------

    @property
    def perturbed(self) -> bool:
        """Whether the weights are at ``w + ε`` now (freeze BatchNorm statistics if
        :attr:`takes_clean_pass`)."""
        return self._stage == _PERTURBED

    def params(self) -> list[nn.Parameter]:
        """The trainable parameters, in parameter-group order."""
        return [p for group in self.param_groups for p in group["params"] if p.requires_grad]

    @torch.no_grad()
    def perturb(self) -> None:
        """Save ``w``, move the weights to ``w + ε`` and clear the gradients; call before the
        forward pass whose gradient the update uses.

        On the clean batch of a consecutive-batch mixed method the weights stay at ``w`` (that
        pass is the clean one); the gradients are cleared all the same.
        """
        if self._stage == _PERTURBED:
            raise PerturbationError(
                f"{type(self).__name__}.perturb(): the weights are already perturbed; call "
                "restore() or step() first"
            )
        if self._stage == _READY:
            raise PerturbationError(
                f"{type(self).__name__}.perturb(): an update gradient is waiting; call step() "
                "first"
            )
        if self.mixes_consecutive_batches and self._stage == _IDLE:
            self.zero_grad(set_to_none=True)  # the clean batch
            return
        if self.needs_gradient_to_perturb and all(p.grad is None for p in self.params()):
            raise PerturbationError(
                f"{type(self).__name__}.perturb() needs the gradient at the current weights: "
                "call loss.backward() first, or pass a closure to step()"
            )
        params = self.params()
        self._saved = [p.detach().clone() for p in params]
        self._perturb(params)
        self.zero_grad(set_to_none=True)
        self._stage = _PERTURBED

    @torch.no_grad()
    def restore(self) -> bool:
        """Put the saved weights back; ``True`` when ``p.grad`` now holds the update gradient.

        ``False`` means the gradient just taken was the clean one of a consecutive-batch
        method: it is kept for the next batch and no step should be taken now.
        """
        if self._stage == _READY:
            return True
        if self._stage == _STASHED:
            return False
        params = self.params()
        if self._stage == _PERTURBED:
            self._finish_perturbed(params)
            for p, saved in zip(params, self._saved, strict=True):
                assert saved is not None
                p.copy_(saved)
            self._saved = []
            self._finish(params)
            self._stage = _READY
            return True
        if self.mixes_consecutive_batches:  # the clean batch's gradient
            self._stash(params)
            self._stage = _STASHED
            return False
        raise PerturbationError(
            f"{type(self).__name__}: nothing to restore; call perturb() before the forward "
            "pass, or pass a closure to step()"
        )

    def _finish_perturbed(self, params: list[nn.Parameter]) -> None:
        """Read the perturbed gradient while the weights are still perturbed (ARWP's F)."""

    def _stash(self, params: list[nn.Parameter]) -> None:
        """Keep the clean gradient (consecutive-batch mixed methods only)."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> torch.Tensor | None:  # type: ignore[override]
        """Finish the update: restore if needed and take the base optimizer's step.

        With ``closure`` (zero the gradients, forward, ``backward()``, return the loss) the
        whole update runs here and the loss at the first point evaluated is returned. Without
        it, :meth:`perturb` and a backward pass must have come first.
        """
        loss = None
        if closure is not None:
            loss = self._run_closure(closure)
        if self._stage == _PERTURBED or (self._stage == _IDLE and self.mixes_consecutive_batches):
            self.restore()
        if self._stage == _STASHED:
            return loss
        if self._stage != _READY:
            raise PerturbationError(
                f"{type(self).__name__}.step() needs a closure, or perturb() and a backward "
                "pass before it"
            )
        self.base_optimizer.step()
        self.updates += 1
        self._stage = _IDLE
        return loss

    def _run_closure(self, closure: Closure) -> torch.Tensor:
        with torch.enable_grad():
            if self.needs_gradient_to_perturb:
                loss = closure()
                self.perturb()
                closure()
                return loss
            self.perturb()
            return closure()

    # -- the perturbation's random stream -------------------------------------------------

    def generator(self, device: torch.device) -> torch.Generator:
        """This optimizer's generator on ``device`` for the current update.

        It is seeded from (:attr:`seed`, device, update count) at the first draw of each
        update, so the noise of update ``t`` depends on nothing else: a checkpoint needs no
        generator state, and a resumed (or differently parallelised) run draws the same noise.
        """
        key = str(device)
        gen = self._generators.get(key)
        if gen is None:
            gen = self._generators[key] = torch.Generator(device=device)
        if self._seeded_for.get(key) != self.updates:
            gen.manual_seed(derive_seed(self.seed, "perturbation", key, self.updates))
            self._seeded_for[key] = self.updates
        return gen

    # -- checkpoints ----------------------------------------------------------------------

    def _extra_state(self) -> dict[str, Any]:
        """Subclass state to checkpoint (tensors per parameter, counters)."""
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`_extra_state` returned."""

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state plus the perturbation's (counters, buffers).

        Raises:
            PerturbationError: the weights are perturbed now; the model's weights would be
                saved at ``w + ε``. Call :meth:`restore` first.
        """
        if self._stage == _PERTURBED:
            raise PerturbationError(
                f"{type(self).__name__}.state_dict(): the weights are perturbed; restore() first"
            )
        return {
            "base": self.base_optimizer.state_dict(),
            "perturbation": {
                "updates": self.updates,
                "stage": self._stage,
                **self._extra_state(),
            },
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:  # type: ignore[override]
        """Restore a state saved by :meth:`state_dict`."""
        self.base_optimizer.load_state_dict(state_dict["base"])
        self.param_groups = self.base_optimizer.param_groups
        extra = dict(state_dict["perturbation"])
        self.updates = int(extra.pop("updates"))
        self._stage = str(extra.pop("stage"))
        self._load_extra_state(extra)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()}, base={self.base_optimizer!r})"

    def _describe(self) -> str:
        return ""
