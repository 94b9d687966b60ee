from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import trio.testing


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """A fresh autojumping virtual clock per test: sleeps cost no real time."""
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


@pytest.fixture
def ends() -> Iterator[list[socket.socket]]:
    """Every socket a test makes (``helpers.pair``), closed at its end."""
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()
