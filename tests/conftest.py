"""Shared test configuration.

Async tests run on trio through anyio's pytest plugin (``@pytest.mark.anyio``).
Unit tests (``tests/unit``) override ``anyio_backend`` to run on a fresh
``trio.testing.MockClock(autojump_threshold=0)`` per test, so retries and
backoffs take virtual time.  Integration tests use real sockets on 127.0.0.1
and the real clock; the two are never mixed.  A bound on real time in a test follows
the machine's pace measured just before (``tests/pace.py``), not a fixed guess.  A test
that needs a program from the system (redis-server, chromium...) asks
``tests/system.py``, which skips it where the program is missing, unless ``CI`` is set.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "quick",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "thorough",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@pytest.fixture(autouse=True)
def _no_ambient_paradigm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real key or URL from the environment, nor a
    proxy: the client reads ``HTTP(S)_PROXY``, and every test server is on 127.0.0.1."""
    monkeypatch.delenv("PARADIGM_API_KEY", raising=False)
    monkeypatch.delenv("PARADIGM_BASE_URL", raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
