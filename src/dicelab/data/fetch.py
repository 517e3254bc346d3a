"""Finding the standard datasets' files, and downloading them from the official mirrors.

A download goes to a temporary file next to its target and is renamed into place only after
its MD5 matches the published checksum, so a file in the data folder is either complete and
verified or placed there by the user. Files placed by hand are not checksum-checked (they may
have been re-packed); the format readers validate them instead.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from dicelab.exceptions import DataError

#: Per dataset: (file name, official URL, MD5 of the published file). Tests point it elsewhere.
MIRRORS: dict[str, list[tuple[str, str, str]]] = {
    "mnist": [
        (
            "train-images-idx3-ubyte.gz",
            "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        ),
        (
            "train-labels-idx1-ubyte.gz",
            "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
            "d53e105ee54ea40749a09fcbcd1e9432",
        ),
        (
            "t10k-images-idx3-ubyte.gz",
            "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
            "9fb629c4189551a2d022fa330f9573f3",
        ),
        (
            "t10k-labels-idx1-ubyte.gz",
            "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    ],
    "fashion-mnist": [
        (
            "train-images-idx3-ubyte.gz",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
            "train-images-idx3-ubyte.gz",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        ),
        (
            "train-labels-idx1-ubyte.gz",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
            "train-labels-idx1-ubyte.gz",
            "25c81989df183df01b3e8a0aad5dffbe",
        ),
        (
            "t10k-images-idx3-ubyte.gz",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-images-idx3-ubyte.gz",
            "bef4ecab320f06d8554ea6380940ec79",
        ),
        (
            "t10k-labels-idx1-ubyte.gz",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
    ],
    "cifar10": [
        (
            "cifar-10-binary.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            "c32a1d4ab5d03f1284b67883e8d87530",
        ),
    ],
    "cifar100": [
        (
            "cifar-100-binary.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
            "03b5dce01913d631647c71ecec9e9cb8",
        ),
    ],
}

_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


def fetch_missing(
    dataset: str, folder: Path, missing: list[str], download: bool, accepted: str = ""
) -> None:
    """Download the ``missing`` files of ``dataset`` into ``folder``, or explain how to get them.

    Args:
        dataset: key of :data:`MIRRORS`.
        folder: where the dataset's files belong.
        missing: names of the absent files, as listed in :data:`MIRRORS`.
        download: fetch them; otherwise raise.
        accepted: a sentence on alternatives the loader also accepts, for the message.

    Raises:
        DataError: when ``download`` is false (naming every missing file, the folder and the
            mirror), or when a download fails or does not match its checksum.
    """
    entries = {name: (url, md5) for name, url, md5 in MIRRORS[dataset]}
    if not download:
        sources = sorted({entries[name][0].rsplit("/", 1)[0] + "/" for name in missing})
        message = (
            f"{dataset}: {len(missing)} file(s) missing from {folder.absolute()}: "
            f"{', '.join(missing)}. Put them in that folder"
        )
        message += f" ({accepted})" if accepted else ""
        message += (
            f", or run with --set data.download=true to fetch them from {', '.join(sources)}."
        )
        raise DataError(message)
    for name in missing:
        url, md5 = entries[name]
        download_file(url, folder / name, md5)


def download_file(url: str, target: Path, md5: str) -> None:
    """Fetch ``url`` into ``target``, renaming it into place only if its MD5 is ``md5``.

    A progress bar goes to stderr when stderr is a terminal. Nothing is left behind on failure.

    Raises:
        DataError: the download failed, or the received file's checksum is not ``md5``.
    """
    from tqdm import tqdm

    # Not tempfile.mkstemp: its files are private (0600); this one gets the umask's mode.
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(tmp, flags, 0o666)
    except OSError as exc:
        raise DataError(f"cannot write to {target.parent.absolute()}: {exc}.") from exc
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    show = sys.stderr is not None and sys.stderr.isatty()
                    with tqdm(
                        total=total,
                        unit="B",
                        unit_scale=True,
                        desc=target.name,
                        file=sys.stderr,
                        disable=not show,
                        leave=False,
                    ) as bar:
                        while chunk := response.read(_CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                raise DataError(
                    f"could not download {url}: {_reason(exc)}. Check the network connection, or "
                    f"download the file by hand and put it in {target.parent.absolute()}."
                ) from exc
        received = digest.hexdigest()
        if received != md5:
            raise DataError(
                f"{target.name}: checksum mismatch for the file downloaded from {url}: "
                f"expected MD5 {md5}, received {received}. The download was discarded; try "
                "again, or put a copy of the official file there by hand."
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _reason(exc: Exception) -> str:
    """What went wrong, without urllib's ``<urlopen error ...>`` wrapping."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc)
