"""Replacing a file atomically: readers see the old file or the new one, whole."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

__all__ = ["replacing"]


@contextmanager
def replacing(path: Path, *, create: bool = False) -> Iterator[IO[bytes]]:
    """A new file to write in place of the existing ``path``, renamed over it at the end.

    The new file is made in the same folder (so the rename is atomic), with ``path``'s
    permission bits, and reaches the disk before the rename, which reaches it too (the
    folder is synced): after a crash, ``path`` is the old file or the new one.  If the
    block raises (``KeyboardInterrupt`` included), the new file is removed and ``path``
    is left as it was.  A symlink is kept: its target is replaced.  With ``create``, a
    ``path`` that does not exist yet is made (with the permissions the umask allows).
    """
    target = Path(os.path.realpath(path))
    if create and not target.exists():
        mode = 0o666 & ~_umask()
    else:
        mode = stat.S_IMODE(target.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f"{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_folder(target.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the file system allows it)."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
