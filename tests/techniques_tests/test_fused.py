"""The fused random kernels (``dicelab.techniques._fused``): the generator is Philox4x32-10
as published, the draws have the right distribution, do not depend on the thread count,
the backward pass masks as the forward did, and every way the kernels can be unavailable
falls back to torch without leaving a broken file behind."""

from __future__ import annotations

import ctypes
import logging
import math
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from dicelab.techniques import _fused as fused


@pytest.fixture(autouse=True)
def fresh_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each test compiles (or fails to) into its own cache, and leaves no cached answer."""
    monkeypatch.setenv("DICELAB_CACHE_DIR", str(tmp_path / "cache"))
    fused.library.cache_clear()
    yield
    fused.library.cache_clear()


@pytest.fixture
def lib() -> ctypes.CDLL:
    built = fused.library()
    if built is None:
        pytest.skip("no C compiler here: the fused kernels cannot be built")
    return built


# Known answers of Philox4x32-10 from the Random123 distribution (kat_vectors):
# (counter, key) -> output.
_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("counter", "key", "expected"), _KAT)
def test_philox_matches_the_published_known_answers(
    lib: ctypes.CDLL, counter: tuple[int, ...], key: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    out = (ctypes.c_uint32 * 4)()
    lib.dl_philox((ctypes.c_uint32 * 4)(*counter), (ctypes.c_uint32 * 2)(*key), out)
    assert tuple(out) == expected


def test_normal_draws_have_the_normal_distribution(lib: ctypes.CDLL) -> None:
    std = 0.5
    gen = torch.Generator().manual_seed(0)
    noise = fused.add_normal(torch.zeros(2_000_000), std, gen)
    assert noise is not None
    z = noise / std
    # 2e6 draws: mean std 7e-4, std relative std 5e-4, tail fractions to ~1e-4; ~6σ bounds.
    assert abs(z.mean().item()) < 0.005
    assert abs(z.std().item() - 1.0) < 0.003
    for k, tail in ((1.0, 0.158655), (2.0, 0.022750), (3.0, 0.001350)):
        assert abs((z > k).float().mean().item() - tail) < 6 * math.sqrt(tail / 2e6)
        assert abs((z < -k).float().mean().item() - tail) < 6 * math.sqrt(tail / 2e6)
    # Neighbouring values (same Philox call, same Box-Muller pair) are uncorrelated.
    for lag in (1, 8, 16, 32):
        r = torch.corrcoef(torch.stack([z[:-lag], z[lag:]]))[0, 1].item()
        assert abs(r) < 0.005, lag


def test_noise_is_added_to_x_and_the_gradient_passes_through(lib: ctypes.CDLL) -> None:
    x = torch.randn(300, 400, generator=torch.Generator().manual_seed(1), requires_grad=True)
    a = fused.add_normal(x, 0.1, torch.Generator().manual_seed(5))
    b = fused.add_normal(torch.zeros(300, 400), 0.1, torch.Generator().manual_seed(5))
    assert a is not None and b is not None
    torch.testing.assert_close(a, x + b)  # the same key draws the same noise
    a.backward(torch.full_like(a, 3.0))
    assert torch.equal(x.grad, torch.full_like(x, 3.0))


def test_values_do_not_depend_on_the_thread_count(lib: ctypes.CDLL) -> None:
    x = torch.zeros(64, 16, 28, 28)  # 800k values: split over threads when there are several
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            gen = torch.Generator().manual_seed(7)
            results.append((fused.add_normal(x, 1.0, gen), fused.apply_keep(x + 1, 0.3, gen)))
    finally:
        torch.set_num_threads(before)
    for noise, kept in results[1:]:
        assert torch.equal(noise, results[0][0])
        assert torch.equal(kept, results[0][1])


def test_each_call_takes_one_key_from_the_generator(lib: ctypes.CDLL) -> None:
    gen, twin = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    first = fused.add_normal(torch.zeros(1000), 1.0, gen)
    second = fused.add_normal(torch.zeros(1000), 1.0, gen)
    assert first is not None and second is not None
    assert not torch.equal(first, second)  # fresh noise at every call
    torch.randint(0, 2**62, (), generator=twin)
    torch.randint(0, 2**62, (), generator=twin)
    assert torch.equal(gen.get_state(), twin.get_state())  # and nothing more


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
def test_keep_mask_fraction(lib: ctypes.CDLL, p: float) -> None:
    kept = fused.apply_keep(torch.ones(1_000_000), p, torch.Generator().manual_seed(0))
    assert kept is not None
    dropped = (kept == 0).float().mean().item()
    assert abs(dropped - p) < 6 * math.sqrt(max(p * (1 - p), 1e-12) / 1e6) + 1e-9
    assert torch.equal(kept[kept != 0], torch.ones_like(kept[kept != 0]))  # no rescaling


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backward_masks_exactly_the_elements_forward_dropped(
    lib: ctypes.CDLL, dtype: torch.dtype
) -> None:
    """The mask is drawn again in the backward pass from the key, by storage position: a
    gradient arriving in another memory layout than x must be masked at the same elements."""
    x = torch.rand(8, 5, 12, 12, generator=torch.Generator().manual_seed(0)) + 1
    x = x.to(dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = fused.apply_keep(x, 0.4, torch.Generator().manual_seed(1))
    assert out is not None and out.is_contiguous(memory_format=torch.channels_last)
    grad = torch.rand(8, 5, 12, 12, generator=torch.Generator().manual_seed(2)).to(dtype) + 1
    out.backward(grad.contiguous())  # NCHW while x was channels_last
    assert x.grad is not None
    assert torch.equal(x.grad, torch.where(out != 0, grad, torch.zeros_like(grad)))


def test_bfloat16_noise_is_rounded_from_the_float32_sum(lib: ctypes.CDLL) -> None:
    x = torch.randn(500, 500, generator=torch.Generator().manual_seed(4))
    noise = fused.add_normal(torch.zeros(500, 500), 0.2, torch.Generator().manual_seed(9))
    in_bf16 = fused.add_normal(x.bfloat16(), 0.2, torch.Generator().manual_seed(9))
    assert noise is not None and in_bf16 is not None and in_bf16.dtype == torch.bfloat16
    assert torch.equal(in_bf16, (x.bfloat16().float() + noise).bfloat16())


@pytest.mark.parametrize(
    "x",
    [
        torch.zeros(10, 10, dtype=torch.float64),  # a dtype the kernels do not have
        torch.zeros(10, 10, dtype=torch.float16),
        torch.zeros(10, 20)[:, ::2],  # not dense
    ],
    ids=["float64", "float16", "strided"],
)
def test_tensors_the_kernels_do_not_take_are_left_to_torch(x: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    assert fused.add_normal(x, 0.1, gen) is None
    assert fused.apply_keep(x, 0.1, gen) is None
    assert torch.equal(gen.get_state(), state)  # nothing drawn: torch's route draws instead


def test_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICELAB_FUSED_DRAWS", "0")
    assert not fused.in_use()
    assert fused.add_normal(torch.zeros(10), 0.1, torch.Generator()) is None


def test_no_compiler_falls_back_and_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CC", "no-such-compiler-here")
    with caplog.at_level(logging.INFO, logger="dicelab.techniques._fused"):
        assert fused.library() is None
    assert "no C compiler" in caplog.text


def test_a_compiler_that_crashes_midway_leaves_no_library_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault injection: the compiler writes half an output file, then fails (a crash, a full
    disk). Nothing is left in the cache to be loaded later, and the run falls back."""
    broken = tmp_path / "broken-cc"
    broken.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo broken-cc 1.0; exit 0; fi\n'
        'for a; do [ "$prev" = -o ] && printf "half a library" > "$a"; prev="$a"; done\n'
        "echo 'No space left on device' >&2; exit 1\n"
    )
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CC", str(broken))
    with caplog.at_level(logging.INFO, logger="dicelab.techniques._fused"):
        assert fused.library() is None
    assert "No space left on device" in caplog.text
    assert list((tmp_path / "cache" / "kernels").iterdir()) == []


def test_an_unwritable_cache_falls_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The cache folder cannot be made (a file is in the way; as root, permissions would not
    stop the write): the techniques draw with torch."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("DICELAB_CACHE_DIR", str(blocker))
    assert fused.library() is None


def test_compiled_once_then_loaded_from_the_cache(lib: ctypes.CDLL, tmp_path: Path) -> None:
    built = list((tmp_path / "cache" / "kernels").iterdir())
    assert [p.suffix for p in built] == [".so"]
    mtime = built[0].stat().st_mtime_ns
    fused.library.cache_clear()
    assert fused.library() is not None
    assert built[0].stat().st_mtime_ns == mtime  # not compiled again
