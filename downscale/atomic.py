"""One way to write a file atomically: to a hidden temporary name in the same folder, renamed into place.

A reader never sees half a file, and a killed writer leaves at most a hidden ``.NAME.tmp-HOST-PID`` that the
next run of the same command removes (:func:`temporary_name` is the one spelling of that name).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["TMP_GLOB", "atomic_path", "sha256_file", "temporary_name", "write_atomic"]

#: matches every temporary name made by :func:`temporary_name`.
TMP_GLOB = ".*.tmp-*"


def temporary_name(path: Path) -> Path:
    """The hidden temporary name of ``path`` for this host and process."""
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


@contextmanager
def atomic_path(path: str | Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without error it is renamed onto ``path``
    (``fsync``: flushed to disk first), else removed.  The folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        if fsync and tmp.is_file():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # a failed write (disk full, read-only, interrupted) leaves no temporary behind
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):  # never hide the error that stopped the write
                tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def sha256_file(path: str | Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
