"""Named, independent random streams derived from one run seed.

Every consumer of randomness (data order, model initialisation, and each technique) draws from
its own ``torch.Generator`` seeded with ``derive_seed(seed, name)``. The derivation uses
BLAKE2b, not Python's ``hash`` (salted per process), so a seed means the same thing on every
machine and in every worker. Library code never draws from or reseeds the caller's global RNG:
code that can only use the global generator (a user's model constructor, say) runs inside
:func:`isolated_global_rng`, which forks the global state and restores it afterwards.

Under torchrun every process holds the same named streams, and a stream is either *replicated*
(the same draws on every rank) or *per rank* (rank ``r > 0`` draws from the stream named
``name/rank{r}``; rank 0 keeps the plain name, so a one-process run draws exactly what it drew
before ranks existed). :class:`RandomStreams` hands out the rank's own stream, except inside
:meth:`RandomStreams.replicated`, where every rank gets the shared one.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def derive_seed(root: int, *parts: str | int) -> int:
    """A stable 63-bit seed for the stream named by ``parts`` under the run seed ``root``.

    Example:
        >>> derive_seed(0, "data_order") == derive_seed(0, "data_order")
        True
        >>> derive_seed(0, "data_order") != derive_seed(0, "model_init")
        True
    """
    data = ":".join(str(p) for p in (root, *parts)).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


class RandomStreams:
    """The run's named generators, created on first use and saved in checkpoints.

    Args:
        seed: the run seed; every stream is derived from it and its name.
        rank: this process's rank in a torchrun job (0 alone); outside :meth:`replicated`,
            rank ``r > 0`` draws stream ``name`` from its own stream ``name/rank{r}``.

    Example:
        >>> streams = RandomStreams(0)
        >>> a = torch.rand(2, generator=streams.generator("data_order"))
        >>> b = torch.rand(2, generator=RandomStreams(0).generator("data_order"))
        >>> torch.equal(a, b)
        True
        >>> other_rank = RandomStreams(0, rank=1)
        >>> torch.equal(a, torch.rand(2, generator=other_rank.generator("data_order")))
        False
        >>> with other_rank.replicated():
        ...     torch.equal(a, torch.rand(2, generator=other_rank.generator("data_order")))
        True
    """

    def __init__(self, seed: int, *, rank: int = 0) -> None:
        if rank < 0:
            raise ValueError(f"rank must be at least 0, got {rank}")
        self.seed = seed
        self.rank = rank
        self._replicated = False
        self._generators: dict[str, torch.Generator] = {}

    @contextmanager
    def replicated(self) -> Iterator[None]:
        """Inside the block every rank draws from the shared (rank-0) streams: for draws
        that must agree across ranks, such as those defining the model or the data order."""
        outer = self._replicated
        self._replicated = True
        try:
            yield
        finally:
            self._replicated = outer

    def generator(self, name: str, device: torch.device | str = "cpu") -> torch.Generator:
        """The generator of stream ``name`` on ``device`` (one per name and device): this
        rank's own, or the shared one inside :meth:`replicated` (the same on rank 0)."""
        if self.rank > 0 and not self._replicated:
            name = f"{name}/rank{self.rank}"
        device = torch.device(device)
        key = f"{name}@{device}"
        gen = self._generators.get(key)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(derive_seed(self.seed, name, str(device)))
            self._generators[key] = gen
        return gen

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The state of every generator used so far, by stream key."""
        return {key: gen.get_state() for key, gen in self._generators.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore generators saved by :meth:`state_dict` (creating them as needed)."""
        with self.replicated():  # keys already name their rank's stream
            for key, value in state.items():
                name, device = key.rsplit("@", 1)
                self.generator(name, device).set_state(value)


@contextmanager
def isolated_global_rng(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block with torch's global generator seeded to ``seed``, then restore it.

    For code that can only draw from the global generator (``nn.Module`` constructors,
    ``nn.Dropout`` inside a user's model). The caller's global state is the same afterwards.
    """
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed)
        yield


@contextmanager
def preserved_host_rng() -> Iterator[None]:
    """Restore Python's and NumPy's global generators after a block that reseeds them.

    Third-party code such as ``mnist1d.make_dataset`` reseeds both; this keeps the effect from
    leaking into the caller.
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
