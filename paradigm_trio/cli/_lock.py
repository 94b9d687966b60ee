"""One ``batch`` run per output file: an exclusive lock held for the whole run.

The lock is the operating system's ``flock(2)`` on a sidecar file, ``OUT.jsonl.lock``,
next to the file the output resolves to (so a symlink and its target share it).  The
kernel releases it when the process ends, however it ends (Ctrl-C, an exception,
``kill -9``, a crash), so a lock file left behind by a dead process never blocks: the
file is only a place to lock and to say who holds it.  Its content is one JSON object,
``{"pid", "host", "started", "command"}``, that a refused run quotes.

The lock is taken on the sidecar rather than on the output itself because a
``--retry-failed`` rewrite replaces the output (a new file renamed over it), and a lock
on the old file would not exclude a run that opens the new one.  The holder removes the
sidecar before it lets go; a run that locked a sidecar just removed (it opened it before
the removal) sees that the path now names another file, and starts again.

POSIX only: on Windows (no ``fcntl``) the run goes ahead unlocked, with a warning.
"""

from __future__ import annotations

import math
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType

import paradigm_trio as pt

from ._text import dumps, loads

if sys.platform != "win32":
    import fcntl

__all__ = ["LockUnavailable", "OutputLock", "lock_path_for"]

POLL_INTERVAL = 0.2  # seconds between two attempts while waiting for the holder to end


class LockUnavailable(Exception):
    """The output is locked by another run (or cannot be locked); ``str()`` says why."""


def lock_path_for(output: Path) -> Path:
    real = Path(os.path.realpath(output))
    return real.with_name(real.name + ".lock")


def _masked(command: Sequence[str]) -> str:
    """The command line, with any password in a URL replaced by ``***``."""
    return pt.mask_credentials(shlex.join(["paradigm-trio", *command]))


class OutputLock:
    """``with OutputLock(output, command).acquire(...):`` holds the output's lock.

    ``acquire`` blocks (sleeping, outside any trio run) only when told to wait.
    """

    def __init__(self, output: Path, command: Sequence[str]) -> None:
        self.output = output
        self.path = lock_path_for(output)
        self.command = list(command)
        self._fd: int | None = None

    def acquire(
        self,
        *,
        wait: bool = False,
        timeout: float = math.inf,
        on_wait: Callable[[str], None] = lambda _: None,
    ) -> OutputLock:
        """Take the lock, or raise :class:`LockUnavailable`.

        If another run holds it: without ``wait``, raise at once; with ``wait``, call
        ``on_wait(who holds it)`` once, then retry every 0.2 s for at most ``timeout``
        seconds.  A Ctrl-C while waiting raises ``KeyboardInterrupt`` as usual.
        """
        if sys.platform == "win32":  # pragma: no cover - POSIX only, see the docstring
            print("warning: output locking needs POSIX flock; not locked", file=sys.stderr)
            return self
        deadline = time.monotonic() + timeout
        announced = False
        while (fd := self._try_lock()) is None:
            holder = self.holder()
            if not wait:
                raise LockUnavailable(
                    f"{self.output} is in use by another run ({holder}); wait for it to end, "
                    "or pass --wait-for-lock to wait for it"
                )
            if time.monotonic() >= deadline:
                raise LockUnavailable(
                    f"gave up waiting after {timeout:g}s: {self.output} is still in use by "
                    f"another run ({holder})"
                )
            if not announced:
                on_wait(f"Waiting for another run to release {self.output} ({holder})...")
                announced = True
            time.sleep(max(0.0, min(POLL_INTERVAL, deadline - time.monotonic())))
        self._fd = fd
        self._write_holder(fd)
        return self

    def _try_lock(self) -> int | None:
        """The locked sidecar's descriptor, or None if another run holds it."""
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise LockUnavailable(
                    f"cannot create the lock file {self.path}: {exc.strerror or exc}"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            except OSError as exc:
                os.close(fd)
                raise LockUnavailable(f"cannot lock {self.path}: {exc.strerror or exc}") from None
            if self._names(fd):
                return fd
            os.close(fd)  # its holder removed it after we opened it: lock the new one

    def _names(self, fd: int) -> bool:
        """Whether the sidecar's path still names the file open as ``fd``."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        opened = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (opened.st_dev, opened.st_ino)

    def _write_holder(self, fd: int) -> None:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": _masked(self.command),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (dumps(info) + "\n").encode(), 0)

    def holder(self) -> str:
        """Who holds the lock, as the sidecar says: ``pid 12 on host, started ...: cmd``."""
        try:
            info = loads(self.path.read_bytes()[:65536])
            who = f"pid {int(info['pid'])} on {info['host']}, started {info['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return f"its details are not in {self.path} yet"
        command = info.get("command")
        return f"{who}: {command}" if isinstance(command, str) else who

    def release(self) -> None:
        """Remove the sidecar, then let go of the lock (in that order: see the docstring)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._names(fd):
                os.unlink(self.path)
        except OSError:
            pass  # a sidecar left behind does not block: the lock goes with the descriptor
        finally:
            os.close(fd)

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
