"""Fused random kernels: activation noise and DropConnect in one pass, on every thread.

Activation noise and DropConnect draw one random value per activation. With torch's CPU
generator (mt19937, one thread) the draw alone is most of their cost, and applying it is a
second pass over memory. The small C file beside this module (``_fused.c``) draws with
Philox4x32-10, a counter-based generator, and adds the noise (or applies the keep mask) in
the same pass, split over torch's intra-op threads: BENCHMARKS.md has the figures.

It is compiled on first use with the system's C compiler (``$CC``, else ``cc``; about a
second) into a cache folder (``$DICELAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/dicelab``, else
``~/.cache/dicelab``) and loaded with :mod:`ctypes`; the file name is a hash of the source,
the flags, the compiler and the CPU, so a changed source or another machine compiles anew.
Where that is not possible (no compiler, a read-only cache, ``DICELAB_FUSED_DRAWS=0``) or the
tensor does not fit (not on the CPU, not float32/bfloat16, not dense, inside
``torch.compile``), :func:`add_normal` and :func:`apply_keep` answer ``None`` and the
technique draws with torch instead.

Reproducibility: each call takes a 64-bit key from the technique's own generator, so the
technique's stream stays seeded and resumable, and the values depend on the key and the
element's position only, not on the number of threads. The two routes draw different
values (of the same distribution): which one a run used is recorded in its metadata
(``fused_draws`` in ``environment()``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import math
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

_log = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("_fused.c")
_FLAGS = (
    "-O3",
    "-march=native",
    "-ffast-math",
    "-ffp-contract=off",  # x + std * z rounded twice, as torch computes it
    "-fopenmp",
    "-shared",
    "-fPIC",
)
_ABI_VERSION = 3
_DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16"}


def _cache_dir() -> Path:
    """Where compiled kernels are kept."""
    if os.environ.get("DICELAB_CACHE_DIR"):
        return Path(os.environ["DICELAB_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dicelab"


def _cpu_signature() -> str:
    """The CPU's model and feature flags (``-march=native`` compiles for them)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = [line for line in lines if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(wanted)))


def _compile(compiler: str, target: Path) -> None:
    """Compile the kernels into ``target`` through a temporary file renamed into place, so
    that a crash or a concurrent compile never leaves a half-written library there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    os.close(fd)
    try:
        subprocess.run(
            [compiler, *_FLAGS, str(_SOURCE), "-o", tmp, "-lm"],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, compiling them if needed; ``None`` where that is not possible
    (the reason is logged once)."""
    if os.environ.get("DICELAB_FUSED_DRAWS", "1") == "0":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        _log.info("fused random kernels off: no C compiler (set CC); torch draws instead")
        return None
    try:
        version = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        digest = hashlib.sha256(
            "\0".join([_SOURCE.read_text(), *_FLAGS, version, _cpu_signature()]).encode()
        ).hexdigest()[:16]
        target = _cache_dir() / "kernels" / f"fused-{digest}.so"
        if not target.exists():
            _compile(compiler, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        _log.info("fused random kernels off (%s); torch draws instead", str(detail).strip())
        return None
    lib.dl_abi_version.restype = ctypes.c_int64
    if lib.dl_abi_version() != _ABI_VERSION:
        _log.info("fused random kernels off: stale library %s; torch draws instead", target)
        return None
    pointer, n, key, threads = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64, ctypes.c_int
    real = ctypes.c_float
    for suffix in _DTYPES.values():
        getattr(lib, f"dl_normal_{suffix}").argtypes = [pointer, pointer, n, real, key, threads]
        keep = [pointer, pointer, pointer, n, ctypes.c_uint32, key, threads]
        getattr(lib, f"dl_keep_{suffix}").argtypes = keep
        getattr(lib, f"dl_select_{suffix}").argtypes = [pointer, pointer, pointer, n, threads]
    lib.dl_philox.argtypes = [pointer, pointer, pointer]
    return lib


def in_use() -> bool:
    """Whether CPU activation noise and DropConnect draw with the fused kernels here."""
    return library() is not None


def _dense_format(x: torch.Tensor) -> torch.memory_format | None:
    """The memory format in which ``x`` is dense (its storage holds exactly its elements in
    that order), or ``None``."""
    if x.is_contiguous():
        return torch.contiguous_format
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return None


def _usable(x: torch.Tensor) -> ctypes.CDLL | None:
    """The kernels if they can process ``x`` as it is, else ``None``."""
    if (
        x.device.type != "cpu"
        or x.dtype not in _DTYPES
        or _dense_format(x) is None
        or torch.compiler.is_compiling()
    ):
        return None
    return library()


def _key(gen: torch.Generator) -> int:
    """A fresh 64-bit key from the technique's generator."""
    return int(torch.randint(0, 2**62, (), generator=gen, device=gen.device))


class _AddNormal(torch.autograd.Function):
    """``x + std * ε``; the gradient passes through unchanged."""

    @staticmethod
    def forward(x: torch.Tensor, std: float, key: int, lib: Any) -> torch.Tensor:
        out = torch.empty_like(x)
        kernel = getattr(lib, f"dl_normal_{_DTYPES[x.dtype]}")
        kernel(out.data_ptr(), x.data_ptr(), x.numel(), std, key, _threads())
        return out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return grad, None, None, None


class _ApplyKeep(torch.autograd.Function):
    """``x ⊙ m`` for a Bernoulli keep mask ``m``, recorded as one bit per element (in ``x``'s
    storage order) when ``x`` needs a gradient; the backward pass applies it to the
    gradient."""

    @staticmethod
    def forward(x: torch.Tensor, threshold: int, key: int, lib: Any) -> torch.Tensor:
        out = torch.empty_like(x)
        words = -(-x.numel() // 32)
        mask = torch.empty(words, dtype=torch.int32) if x.requires_grad else None
        getattr(lib, f"dl_keep_{_DTYPES[x.dtype]}")(
            out.data_ptr(),
            x.data_ptr(),
            None if mask is None else mask.data_ptr(),
            x.numel(),
            threshold,
            key,
            _threads(),
        )
        return out if mask is None else (out, mask)  # type: ignore[return-value]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        x, _, _, ctx.lib = inputs
        ctx.layout = _dense_format(x)
        ctx.set_materialize_grads(False)  # the mask has no gradient: none to allocate
        if isinstance(output, tuple):
            ctx.save_for_backward(output[1])
            ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor | None, *_: Any) -> tuple[torch.Tensor | None, ...]:
        if grad is None:  # the output was not used in the loss
            return None, None, None, None
        (mask,) = ctx.saved_tensors
        # The mask is in storage order: lay the gradient out as x was.
        grad = grad.contiguous(memory_format=ctx.layout)
        out = torch.empty_like(grad)
        getattr(ctx.lib, f"dl_select_{_DTYPES[grad.dtype]}")(
            out.data_ptr(), grad.data_ptr(), mask.data_ptr(), grad.numel(), _threads()
        )
        return out, None, None, None


def _threads() -> int:
    """How many threads a kernel may use: torch's intra-op count."""
    return torch.get_num_threads()


def add_normal(x: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor | None:
    """``x + ε``, ε ~ N(0, std²) element-wise, in ``x``'s memory layout, by the fused kernel;
    ``None`` when the kernel cannot take ``x`` (then nothing is drawn from ``gen``)."""
    lib = _usable(x)
    if lib is None:
        return None
    return _AddNormal.apply(x, std, _key(gen), lib)


def apply_keep(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor | None:
    """``x`` with each element dropped (set to +0) with probability ``p`` (rounded up to a
    multiple of 2⁻²⁴),
    by the fused kernel; ``None`` when the kernel cannot take ``x`` (then nothing is drawn
    from ``gen``)."""
    lib = _usable(x)
    if lib is None:
        return None
    threshold = math.ceil(p * 2**24)  # keep when the 24-bit uniform is >= p
    out = _ApplyKeep.apply(x, threshold, _key(gen), lib)
    return out[0] if isinstance(out, tuple) else out
