"""Readers for the binary formats of the standard datasets, with strict validation.

Every inconsistency (wrong magic number, truncated payload, record size that does not divide
the file) is a :class:`~dicelab.exceptions.DataError` naming the file and what is wrong, raised
before any of its data is used.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from dicelab.exceptions import DataError

#: IDX magic numbers: two zero bytes, the element type (0x08 = unsigned byte), the rank.
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801

CIFAR_PIXELS = 3 * 32 * 32


def read_file(path: Path) -> bytes:
    """The content of ``path``, gunzipped if its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(
            f"{path}: cannot decompress it ({exc}); the file is truncated or not gzip data. "
            "Delete it and put a complete copy there."
        ) from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc}).") from exc


def parse_idx(data: bytes, magic: int, source: str) -> np.ndarray:
    """Decode an IDX file of unsigned bytes whose header starts with ``magic``.

    Args:
        data: the whole (decompressed) file.
        magic: the expected magic number; its low byte is the number of dimensions.
        source: the file's name, for messages.

    Returns:
        A writable ``uint8`` array with the header's dimensions.
    """
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{source}: truncated IDX header ({len(data)} bytes, at least {header} expected)."
        )
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise DataError(
            f"{source}: wrong magic number 0x{found:08x}, expected 0x{magic:08x}; this is not "
            f"an IDX {'image' if ndim == 3 else 'label'} file."
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    payload = len(data) - header
    if payload != math.prod(dims):
        raise DataError(
            f"{source}: the header declares dimensions {dims} ({math.prod(dims)} bytes) but "
            f"the payload has {payload} bytes; the file is truncated or corrupted."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx_pair(
    images_path: Path, labels_path: Path, image_shape: tuple[int, int], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 1, H, W)`` and ``int64`` labels ``(N,)`` from a pair of IDX files."""
    images = parse_idx(read_file(images_path), IDX_IMAGES_MAGIC, str(images_path))
    labels = parse_idx(read_file(labels_path), IDX_LABELS_MAGIC, str(labels_path))
    if images.shape[1:] != image_shape:
        raise DataError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected "
            f"{image_shape[0]}x{image_shape[1]}."
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels."
        )
    _check_labels(labels, num_classes, str(labels_path))
    return images[:, None], labels.astype(np.int64)


def parse_cifar(
    data: bytes, source: str, label_bytes: int, count: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a CIFAR binary batch: records of label byte(s) then 3×32×32 channel-major pixels.

    Args:
        data: the whole batch file.
        source: the file's name, for messages.
        label_bytes: 1 for CIFAR-10; 2 for CIFAR-100 (coarse then fine; the fine one is used).
        count: the number of records the official file holds.
        num_classes: labels must be below it.

    Returns:
        Images ``uint8`` (N, 3, 32, 32) and labels ``int64`` (N,).
    """
    record = label_bytes + CIFAR_PIXELS
    if len(data) % record:
        raise DataError(
            f"{source}: {len(data)} bytes is not a whole number of {record}-byte records; "
            "the file is truncated or corrupted."
        )
    n = len(data) // record
    if n != count:
        raise DataError(
            f"{source}: {n} records, expected {count}; the file is truncated or not the "
            "official one."
        )
    rows = np.frombuffer(data, dtype=np.uint8).reshape(n, record)
    labels = rows[:, label_bytes - 1].astype(np.int64)
    _check_labels(labels, num_classes, source)
    return rows[:, label_bytes:].reshape(n, 3, 32, 32).copy(), labels


def _check_labels(labels: np.ndarray, num_classes: int, source: str) -> None:
    if labels.size and int(labels.max()) >= num_classes:
        raise DataError(
            f"{source}: label {int(labels.max())} found, expected labels below {num_classes}."
        )
