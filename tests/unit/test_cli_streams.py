"""stdout and stderr that a closed pipe cannot break (``paradigm_trio.cli._streams``).

The whole commands are run with pipes closed early in ``tests/integration/test_cli_pipes.py``.
"""

from __future__ import annotations

import io
import os

import pytest

from paradigm_trio.cli._streams import _PipeTolerant


def test_a_closed_pipe_silences_the_stream_and_nothing_else() -> None:
    read_end, write_end = os.pipe()
    stream = open(write_end, "w", buffering=1)  # noqa: SIM115 - closed below
    try:
        tolerant = _PipeTolerant(stream)
        tolerant.write("seen\n")
        assert os.read(read_end, 100) == b"seen\n"
        os.close(read_end)  # the reader goes away (| head -1)
        assert tolerant.write("lost\n") == 5
        tolerant.write("lost too\n")
        tolerant.flush()
        assert os.fstat(write_end).st_rdev == os.stat(os.devnull).st_rdev
    finally:
        stream.close()
    with pytest.raises(ValueError, match="closed file"):  # not a broken pipe: not hidden
        _PipeTolerant(stream).write("closed file\n")


def test_other_stream_errors_are_not_hidden() -> None:
    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        _PipeTolerant(Full()).write("x")
