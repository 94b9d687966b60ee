"""Serving the mock in-process: :func:`serve` and the :class:`MockServer` handle."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import hypercorn.config
import hypercorn.trio
import trio
from quart_trio import QuartTrio

from ._app import create_app, get_state
from ._config import MockConfig
from ._faults import ScriptEntry
from ._state import MockState, MockStats, RequestRecord
from ._tls import TLSFiles

__all__ = ["API_PREFIX", "MockServer", "hypercorn_config", "is_loopback", "serve"]

#: Path prefix of the Paradigm API (``MockServer.url`` ends with it).
API_PREFIX = "/api/v2"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the mock on this machine.

    True for a loopback address (``127.0.0.0/8``, ``::1``) or ``localhost``; false for
    anything else, including ``0.0.0.0``, ``::``, ``""`` and other host names.
    """
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def hypercorn_config(
    host: str = "127.0.0.1", port: int = 0, tls: TLSFiles | None = None
) -> hypercorn.config.Config:
    """The Hypercorn config used by :func:`serve`: quiet, no graceful period, large backlog;
    HTTPS with ``tls`` (requiring client certificates if ``tls.client_ca`` is set)."""
    config = hypercorn.config.Config()
    if tls is not None:
        config.certfile, config.keyfile = tls.certfile, tls.keyfile
        if tls.client_ca is not None:
            config.ca_certs = tls.client_ca
            config.verify_mode = ssl.CERT_REQUIRED
    bind_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    config.bind = [f"{bind_host}:{port}"]
    config.accesslog = None
    config.loglevel = "WARNING"
    config.graceful_timeout = 0.0
    config.backlog = 1024
    return config


class MockServer:
    """A running mock server (yielded by :func:`serve`).

    Attributes:
        url: Base URL for clients, ``http://127.0.0.1:PORT/api/v2`` (``https://`` when
            served with TLS).
        root_url: ``http://127.0.0.1:PORT`` (admin routes live under it).
        app: The ``QuartTrio`` app being served.
    """

    def __init__(self, app: QuartTrio, root_url: str) -> None:
        self.app = app
        self.root_url = root_url.rstrip("/")
        self.url = self.root_url + API_PREFIX
        self._state = get_state(app)

    def __repr__(self) -> str:
        return f"<MockServer {self.url}>"

    @property
    def state(self) -> MockState:
        """The shared state object (same as ``mock_server.get_state(server.app)``)."""
        return self._state

    @property
    def config(self) -> MockConfig:
        """The current config."""
        return self._state.config

    @property
    def admin_token(self) -> str | None:
        """The token the admin routes need (``config.admin_token``), or ``None`` for none."""
        return self._state.config.admin_token

    def configure(self, config: MockConfig | None = None, /, **changes: Any) -> MockConfig:
        """Change the config live: ``configure(new_config)`` and/or ``configure(field=value)``."""
        return self._state.configure(config, **changes)

    def reset(self) -> None:
        """Clear the request log, counters, attempt numbers, quota buckets and scripts."""
        self._state.reset()

    def script(self, key: str, outcomes: Iterable[ScriptEntry | Mapping[str, Any]]) -> None:
        """Script the next outcomes of request key ``key`` (see :meth:`MockState.script`)."""
        self._state.script(key, outcomes)

    def stats(self) -> MockStats:
        """A frozen snapshot of the counters."""
        return self._state.stats()

    def requests(self) -> list[RequestRecord]:
        """Frozen snapshots of the logged API requests, in arrival order."""
        return self._state.requests()

    def files(self) -> list[dict[str, Any]]:
        """The uploaded files (``GET /_mock/files``): id, filename, bytes, sha256, status..."""
        return self._state.file_summaries()


@asynccontextmanager
async def serve(
    config: MockConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    app: QuartTrio | None = None,
    tls: TLSFiles | None = None,
) -> AsyncIterator[MockServer]:
    """Run the mock inside the current trio task; yield a :class:`MockServer`.

    Binds ``host:port`` (default ``127.0.0.1:0``, an ephemeral port) with
    ``await nursery.start(partial(hypercorn.trio.serve, app, config))``, so the
    server is accepting connections when the ``async with`` body starts, and
    stops it on exit by cancelling its nursery: requests still in flight (a
    ``hang`` for instance) are cancelled, which takes milliseconds.

    ``app`` serves an app from :func:`create_app` instead of a new one (then
    ``config``, if given, replaces its config).

    On a ``host`` beyond loopback (see :func:`is_loopback`) the admin routes always
    need a token: ``config.admin_token``, or one generated here and readable as
    :attr:`MockServer.admin_token`.  Then the config can no longer drop it.

    With ``tls`` (:class:`TLSFiles`, e.g. from :func:`throwaway_ca`) it serves HTTPS, and
    :attr:`MockServer.url` starts with ``https://``.
    """
    if app is None:
        app = create_app(config)
    elif config is not None:
        get_state(app).configure(config)
    if not is_loopback(host):
        get_state(app).require_admin_token()
    hcfg = hypercorn_config(host, port, tls)
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(partial(hypercorn.trio.serve, app, hcfg))
            server = MockServer(app, binds[0])
            try:
                yield server
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # An error of the ``async with`` body comes out alone, not wrapped in a group
        # by the server's nursery.
        if body_error is not None and list(group.exceptions) == [body_error]:
            raise body_error from body_error.__cause__
        raise
