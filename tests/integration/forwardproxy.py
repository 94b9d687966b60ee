"""A real forward proxy for the tests: ``proxy.py`` run as a process on 127.0.0.1.

``forward_proxy(folder)`` starts it on a free port (``--port 0 --port-file``), with the
plugin of ``proxyplugin.py`` (names under ``.internal`` resolve to 127.0.0.1 for the
proxy only; a log line per upstream connection), optional Basic credentials and TLS
(an ``https://`` proxy); waits until it listens; yields a :class:`ForwardProxy`; and
stops it on exit.  ``proxy.py`` comes with the ``test`` dependency group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0


@dataclass
class ForwardProxy:
    url: str  # without credentials
    port: int
    log: Path
    process: trio.Process

    def upstream(self) -> list[str]:
        """The upstream connections opened so far: ``"CONNECT host:port"``, ``"GET ..."``."""
        return self.log.read_text().splitlines() if self.log.exists() else []

    def kill(self) -> None:
        """Stop the proxy at once, its worker processes included: its tunnels drop."""
        _kill_group(self.process)


@asynccontextmanager
async def forward_proxy(
    folder: Path,
    *,
    basic_auth: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> AsyncIterator[ForwardProxy]:
    folder.mkdir(parents=True, exist_ok=True)
    port_file, log, errors = folder / "proxy.port", folder / "proxy.log", folder / "proxy.err"
    port_file.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0",
        "--port-file", str(port_file), "--num-workers", "1", "--num-acceptors", "1",
        "--plugins", "tests.integration.proxyplugin.InternalNames", "--log-level", "WARNING",
        "--timeout", "30",
    ]  # fmt: skip
    if basic_auth:
        command += ["--basic-auth", basic_auth]
    if certfile and keyfile:
        command += ["--cert-file", certfile, "--key-file", keyfile]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROXY_TEST_LOG": str(log)}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    with errors.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
    try:
        port = await _wait_for_port(port_file, process, errors)
        scheme = "https" if certfile else "http"
        yield ForwardProxy(f"{scheme}://127.0.0.1:{port}", port, log, process)
    finally:
        with trio.CancelScope(shield=True):
            await _stop(process)


async def _wait_for_port(port_file: Path, process: trio.Process, errors: Path) -> int:
    with trio.move_on_after(START_TIMEOUT):
        while process.returncode is None and process.poll() is None:
            text = port_file.read_text().strip() if port_file.exists() else ""
            if text:
                # The port file is written just before the proxy listens: check it does.
                port = int(text)
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                except OSError:
                    pass
                else:
                    await stream.aclose()
                    return port
            await trio.sleep(0.02)
    raise RuntimeError(f"proxy.py did not start: {errors.read_text()[-2000:]}")


async def _stop(process: trio.Process) -> None:
    """SIGTERM, then SIGKILL to the whole process group (proxy.py has worker processes)."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(10):
            await process.wait()
    _kill_group(process)
    await process.wait()


def _kill_group(process: trio.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
