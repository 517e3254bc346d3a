"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 from their official files.

Each dataset's files live in ``<root>/<name>/``: the four IDX files for the MNIST family
(gzipped as published, or uncompressed), and for CIFAR the official *binary* archive, read
member by member without extracting it, or its already-extracted folder. The Python/pickle
distributions of CIFAR are deliberately not supported: unpickling a downloaded file can run
arbitrary code.
"""

from __future__ import annotations

import functools
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dicelab.data.core import DatasetInfo, RawData, Split, register
from dicelab.data.fetch import fetch_missing
from dicelab.data.formats import parse_cifar, read_file, read_idx_pair
from dicelab.exceptions import DataError

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclass(frozen=True)
class CifarLayout:
    """Where a CIFAR binary distribution keeps its batches, and what they hold.

    Attributes:
        archive: the published archive's file name.
        folder: the folder the archive's members sit in (and that extracting it creates).
        train: the training batches, in order.
        test: the test batch.
        train_records: records in each training batch.
        test_records: records in the test batch.
        label_bytes: label bytes before each image (CIFAR-100 has a coarse and a fine label).
        num_classes: number of (fine) classes.
    """

    archive: str
    folder: str
    train: tuple[str, ...]
    test: str
    train_records: int
    test_records: int
    label_bytes: int
    num_classes: int


#: The official layouts (https://www.cs.toronto.edu/~kriz/cifar.html). Tests shrink the counts.
CIFAR_LAYOUTS: dict[str, CifarLayout] = {
    "cifar10": CifarLayout(
        archive="cifar-10-binary.tar.gz",
        folder="cifar-10-batches-bin",
        train=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test="test_batch.bin",
        train_records=10000,
        test_records=10000,
        label_bytes=1,
        num_classes=10,
    ),
    "cifar100": CifarLayout(
        archive="cifar-100-binary.tar.gz",
        folder="cifar-100-binary",
        train=("train.bin",),
        test="test.bin",
        train_records=50000,
        test_records=10000,
        label_bytes=2,
        num_classes=100,
    ),
}


def load_idx_dataset(name: str, root: Path, download: bool) -> RawData:
    """An MNIST-format dataset from the IDX files in ``<root>/<name>/``."""
    folder = root / name
    found = [_find_idx(folder, file) for file in IDX_FILES]
    missing = [file for file, path in zip(IDX_FILES, found, strict=True) if path is None]
    if missing:
        fetch_missing(
            name, folder, missing, download, accepted="uncompressed copies are accepted too"
        )
    paths = [path or folder / file for file, path in zip(IDX_FILES, found, strict=True)]
    train = read_idx_pair(paths[0], paths[1], (28, 28), 10)
    test = read_idx_pair(paths[2], paths[3], (28, 28), 10)
    return RawData(train=_split(*train), test=_split(*test), num_classes=10)


def _find_idx(folder: Path, gz_name: str) -> Path | None:
    """The gzipped file if present, else the uncompressed one, else ``None``."""
    for path in (folder / gz_name, folder / gz_name.removesuffix(".gz")):
        if path.is_file():
            return path
    return None


def load_cifar(name: str, root: Path, download: bool) -> RawData:
    """A CIFAR dataset from its extracted binary folder or archive in ``<root>/<name>/``."""
    layout = CIFAR_LAYOUTS[name]
    folder = root / name
    extracted = folder / layout.folder
    members = (*layout.train, layout.test)
    if all((extracted / member).is_file() for member in members):
        blobs = {member: read_file(extracted / member) for member in members}
        sources = {member: str(extracted / member) for member in members}
    else:
        archive = folder / layout.archive
        if not archive.is_file():
            fetch_missing(
                name,
                folder,
                [layout.archive],
                download,
                accepted=f"or the extracted folder {layout.folder}/",
            )
        blobs = _read_members(archive, layout.folder, members)
        sources = {member: f"{archive}:{layout.folder}/{member}" for member in members}

    def parse(member: str, count: int) -> tuple[np.ndarray, np.ndarray]:
        return parse_cifar(
            blobs.pop(member), sources[member], layout.label_bytes, count, layout.num_classes
        )

    parts = [parse(member, layout.train_records) for member in layout.train]
    train = (np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]))
    test = parse(layout.test, layout.test_records)
    return RawData(train=_split(*train), test=_split(*test), num_classes=layout.num_classes)


def _read_members(archive: Path, folder: str, members: tuple[str, ...]) -> dict[str, bytes]:
    """The bytes of ``folder/member`` for each member, read from the archive in one pass.

    Only the expected member names are read, and only if they are regular files; nothing is
    written to disk.
    """
    wanted = {f"{folder}/{member}": member for member in members}
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for info in tar:
                member = wanted.get(info.name)
                if member is None or member in blobs:
                    continue
                handle = tar.extractfile(info) if info.isfile() else None
                if handle is None:
                    raise DataError(f"{archive}: member {info.name} is not a regular file.")
                blobs[member] = handle.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(
            f"{archive}: cannot read the archive ({exc}); it is truncated or corrupted. "
            "Delete it and put a complete copy there."
        ) from exc
    absent = [name for name, member in wanted.items() if member not in blobs]
    if absent:
        raise DataError(
            f"{archive}: member(s) {', '.join(absent)} not found; expected the official binary "
            "distribution (not the python or matlab one)."
        )
    return blobs


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


register(
    DatasetInfo(
        name="mnist",
        description="MNIST handwritten digits, 28x28 grey, 60k train / 10k test (IDX files)",
        offline=False,
        loader=functools.partial(load_idx_dataset, "mnist"),
    )
)
register(
    DatasetInfo(
        name="fashion-mnist",
        description="Fashion-MNIST clothing, 28x28 grey, 60k train / 10k test (IDX files)",
        offline=False,
        loader=functools.partial(load_idx_dataset, "fashion-mnist"),
    )
)
register(
    DatasetInfo(
        name="cifar10",
        description="CIFAR-10, 32x32 colour, 10 classes, 50k train / 10k test (binary version)",
        offline=False,
        loader=functools.partial(load_cifar, "cifar10"),
    )
)
register(
    DatasetInfo(
        name="cifar100",
        description="CIFAR-100, 32x32 colour, 100 fine classes, 50k train / 10k test (binary)",
        offline=False,
        loader=functools.partial(load_cifar, "cifar100"),
    )
)
