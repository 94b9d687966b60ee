"""stdout and stderr that a reader going away cannot break (``... 2>&1 | head -1``).

When the reader of a pipe exits, the next write to it fails with ``BrokenPipeError``
(Python ignores SIGPIPE).  The commands' output is for a person to read; what they do
(the requests, the output file, the report, the exit code) must not depend on whether
someone is still reading it.  So, for the duration of a command, ``sys.stdout`` and
``sys.stderr`` are wrapped: the first broken pipe points the descriptor at
``/dev/null`` and the command goes on, silently.  Standard descriptors that are closed
at start (``2>&-``) are opened on ``/dev/null`` first, so that no file the command opens
takes their number and receives its messages.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TextIO, cast

__all__ = ["tolerant_std_streams"]


class _PipeTolerant:
    """A text stream whose writes never raise ``BrokenPipeError``."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                self._stream.write(text)
            except OSError as exc:
                if not self._reader_gone(exc):
                    raise
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except OSError as exc:
                if not self._reader_gone(exc):
                    raise

    def _reader_gone(self, exc: OSError) -> bool:
        """Whether ``exc`` says the reader went away; if so, write to /dev/null from now on."""
        if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
            return False
        self._gone = True
        try:  # what is still buffered, and what others write there, goes to /dev/null
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass  # no descriptor (an in-memory stream): only this wrapper goes quiet
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _open_closed_std_fds() -> None:
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)  # the lowest free number: fd itself
            if opened != fd:  # pragma: no cover - only if fd was taken meanwhile
                os.close(opened)


@contextmanager
def tolerant_std_streams() -> Iterator[None]:
    """Wrap ``sys.stdout`` and ``sys.stderr`` for the block (see the module docstring)."""
    _open_closed_std_fds()
    saved = sys.stdout, sys.stderr
    with ExitStack() as stack:
        streams = [
            stream if stream is not None else stack.enter_context(open(os.devnull, "w"))
            for stream in saved
        ]
        out, err = _PipeTolerant(streams[0]), _PipeTolerant(streams[1])
        sys.stdout, sys.stderr = cast(TextIO, out), cast(TextIO, err)
        try:
            yield
        finally:
            out.flush()  # what is buffered, while a broken pipe is still tolerated
            err.flush()
            sys.stdout, sys.stderr = saved
