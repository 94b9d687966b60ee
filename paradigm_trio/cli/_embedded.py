"""The embedded mock server behind ``--mock`` (the one place the CLI joins the two packages)."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from ._extras import MOCK_EXTRA, install_hint

MOCK_API_KEY = "mock-key-not-secret"


@asynccontextmanager
async def embedded_mock(*, latency: str, seed: int = 0, **config: Any) -> AsyncIterator[str]:
    """Serve the mock on 127.0.0.1 (a free port) for the duration; yields its base URL.

    ``latency`` is in the mock's notation (``"lognormal:0.5,0.3"``: median 0.5 s).
    """
    try:
        import mock_server
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise SystemExit(
            f"--mock needs the mock extra ({exc}): {install_hint(*MOCK_EXTRA)}"
        ) from None
    cfg = mock_server.MockConfig(latency=mock_server.Latency.parse(latency), seed=seed, **config)
    async with mock_server.serve(cfg) as server:
        yield server.url


async def server_of(
    stack: AsyncExitStack, args: argparse.Namespace, *, latency: str, seed: int = 0
) -> tuple[str | None, str | None]:
    """``(api_key, base_url)`` for a command's client: with ``--mock``, the embedded mock's
    (started on ``stack``, which stops it); else ``None`` (the environment's key) and
    ``--base-url``.  Blocks while the mock server starts."""
    if not args.mock:
        return None, args.base_url
    base_url = await stack.enter_async_context(embedded_mock(latency=latency, seed=seed))
    return MOCK_API_KEY, base_url
