"""The mock server as a process on 127.0.0.1:0, for tests whose client lives elsewhere
(another process, a Jupyter kernel, a thread of its own)."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def mock_process(*args: str) -> Iterator[str]:
    """Run ``python -m mock_server --port 0 ARGS``; yield its base URL; stop it (SIGINT)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mock_server", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/api/v2)", line)
        assert match, line
        yield match.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def mock_stats(base_url: str) -> dict[str, Any]:
    """The mock's counters (``GET /_mock/stats``)."""
    root = base_url.removesuffix("/api/v2")
    with urllib.request.urlopen(f"{root}/_mock/stats", timeout=10) as answer:
        stats: dict[str, Any] = json.load(answer)
    return stats
