"""Random tensors laid out in memory like the activation they perturb.

The trainer keeps convolutional activations in channels_last (NHWC) memory. A draw made with
``torch.rand``/``torch.randn`` is NCHW-contiguous, and an element-wise op between the two
layouts is slower; drawing straight into a channels_last tensor (``torch.randn_like``, or
``normal_`` on it) takes CPU PyTorch's slow path for non-contiguous tensors, measured 7-8x
slower than a plain draw. :func:`fill_like` allocates the tensor in the activation's layout
and fills the dense view of its storage, which draws at the speed of a plain contiguous draw.

The values are a different arrangement of the same stream than an NCHW draw would give: a run
in channels_last draws the same distribution as one in NCHW, not the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def fill_like(x: torch.Tensor, fill: Callable[[torch.Tensor], object]) -> torch.Tensor:
    """A new tensor shaped and laid out like ``x`` (same dtype and device), filled in place by
    ``fill`` (e.g. ``lambda t: t.normal_(0, std, generator=g)``) through a contiguous view of
    its storage.

    Example:
        >>> x = torch.zeros(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
        >>> g = torch.Generator().manual_seed(0)
        >>> noise = fill_like(x, lambda t: t.normal_(generator=g))
        >>> noise.is_contiguous(memory_format=torch.channels_last), noise.shape
        (True, torch.Size([2, 3, 4, 4]))
    """
    out = torch.empty_like(x)
    if x.dim() == 4 and not out.is_contiguous():  # channels_last: its storage is NHWC-dense
        fill(out.permute(0, 2, 3, 1))
    else:
        fill(out)
    return out
