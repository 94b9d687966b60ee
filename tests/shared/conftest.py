"""Fixtures of the shared-quota tests: a real redis-server per test (or per module).

coredis (6.9) leaks the anyio memory streams of a connection whose connect fails (they
are closed only once connected), and anyio warns about each when it is collected.  The
tests that stop Redis make many such connections, so each test ends with a garbage
collection that ignores those warnings: they are not ours, and must not surface in
whichever later test the collector happens to run.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator

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
