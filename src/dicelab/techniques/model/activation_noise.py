"""Activation noise: Gaussian noise added to the input of every ReLU (the authors' NoisyReLU).

In training, every ``nn.ReLU`` module computes

    relu(x + ε),   ε ~ N(0, std²) element-wise, fresh at every forward pass

instead of ``relu(x)``; in evaluation it is the plain ReLU. Stage: MODEL, a forward pre-hook
on each ``nn.ReLU`` that adds the noise to its input; identity when the module is in
``eval()`` mode or the injector is paused. The authors replace every ReLU of their VGG and FC
networks by NoisyReLU, so only ``nn.ReLU`` is hooked (not the other activations).

Limitation: a ReLU applied functionally in a user's ``forward`` (``F.relu``,
``torch.relu``, ``x.relu()``) is not a module and cannot be hooked; make it an ``nn.ReLU``
module to get the noise. A ReLU module called several times gets fresh noise at each call.

How it draws: on the CPU, for float32 and bfloat16 activations, with dicelab's fused kernel
(:mod:`dicelab.techniques._fused`: Philox4x32-10 keyed from this technique's stream, drawn
and added in one pass on torch's threads); elsewhere, or without a C compiler, with torch's
generator. Both draw N(0, std²); ``fused_draws`` in a run's metadata says which route it took.

References:
    Altarabichi et al., "Rolling the dice for better deep learning performance",
    Information Sciences 667 (2024), arXiv:2404.03992.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn
from torch.utils.hooks import RemovableHandle

from dicelab.space import hp
from dicelab.stages import Category, Context
from dicelab.techniques._base import BaseTechnique, register_technique
from dicelab.techniques._draw import fill_like
from dicelab.techniques._fused import add_normal


@register_technique
@dataclass(repr=False)
class ActivationNoise(BaseTechnique):
    """Add N(0, std²) noise to the input of every ``nn.ReLU`` (NoisyReLU).

    Args:
        std: standard deviation of the noise, in activation units; ``0.0`` (default) is off.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> len(ActivationNoise(std=0.05).attach(net, Context()))
        1
    """

    name: ClassVar[str] = "activation_noise"
    category: ClassVar[Category] = Category.MODEL
    strength: ClassVar[str] = "std"
    priority: ClassVar[int] = 40

    std: float = hp(0.0, valid=(0.0, None), search=(0.0, 0.1), doc="noise standard deviation")

    def attach(self, model: nn.Module, ctx: Context) -> list[RemovableHandle]:
        """MODEL: once, after ``setup``; a forward pre-hook on every ``nn.ReLU``."""
        if self.is_noop:
            return []

        def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            if not (module.training and ctx.training):
                return None
            x = args[0]
            gen = self.rng(x.device)
            # Drawn and added in one pass on every thread where the fused kernel takes x;
            # else N(0, std²) drawn in x's memory layout, then x added in place into the
            # draw's own buffer. BENCHMARKS.md has the costs.
            noisy = add_normal(x, self.std, gen)
            if noisy is None:
                noise = fill_like(x, lambda t: t.normal_(0.0, self.std, generator=gen))
                noisy = noise.add_(x)
            return (noisy, *args[1:])

        relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        return [relu.register_forward_pre_hook(hook) for relu in relus]
