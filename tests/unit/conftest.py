from __future__ import annotations

from typing import Any

import pytest
import trio.testing


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """A fresh autojumping virtual clock per test: sleeps cost no real time."""
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
