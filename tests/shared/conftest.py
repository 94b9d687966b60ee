"""Fixtures of the shared-quota tests: a real redis-server per test (or per module).

coredis (6.9) leaks the anyio memory streams of a connection whose connect fails (they
are closed only once connected), and anyio warns about each when it is collected.  The
tests that stop Redis make many such connections, so each test ends with a garbage
collection that ignores those warnings: they are not ours, and must not surface in
whichever later test the collector happens to run.
"""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator

import httpx2
import pytest

from ..redis_helpers import RedisServer

LEAKED_STREAMS = "ignore:Unclosed <MemoryObject:ResourceWarning"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/shared/" in item.nodeid:
            item.add_marker(pytest.mark.filterwarnings(LEAKED_STREAMS))


@pytest.fixture(autouse=True)
def _collect_leaked_streams() -> Iterator[None]:
    yield
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Unclosed <MemoryObject", ResourceWarning)
        gc.collect()


def _running() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server for one test (it may stop and restart it)."""
    yield from _running()


@pytest.fixture(scope="module")
def module_redis() -> Iterator[RedisServer]:
    """One redis-server for a module's tests (each uses quota names of its own)."""
    yield from _running()


QUOTA = 600
"""The quota of :func:`quota_mock`, in requests a minute (10 a second)."""


@pytest.fixture
def quota_mock() -> Iterator[str]:
    """A mock process with a quota of QUOTA requests a minute; its API root URL."""
    argv = [sys.executable, "-m", "mock_server", "--port", "0", "--rpm", str(QUOTA),
            "--latency", "fixed:0.05"]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True) as proc:  # fmt: skip
        assert proc.stdout is not None
        match = re.search(r"(http://127\.0\.0\.1:\d+/api/v2)", proc.stdout.readline())
        assert match
        try:
            yield match.group(1)
        finally:
            proc.terminate()  # the mock stops on SIGTERM as on SIGINT
            proc.wait(timeout=10)


def mock_arrivals(url: str) -> list[float]:
    """When each request the mock answered ``ok`` arrived (its clock, seconds), sorted."""
    root = url.rsplit("/api/v2", 1)[0]
    records = httpx2.get(f"{root}/_mock/requests", timeout=10).json()["data"]
    return sorted(r["arrival"] for r in records if r["outcome"] == "ok")


def mock_outcomes(url: str) -> dict[str, int]:
    """The mock's requests by outcome (``ok``, ``quota`` for its 429s, ...)."""
    root = url.rsplit("/api/v2", 1)[0]
    return dict(httpx2.get(f"{root}/_mock/stats", timeout=10).json()["by_outcome"])
