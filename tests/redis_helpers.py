"""A real ``redis-server`` for tests: on a free loopback port, persistence off, stopped after.

Debian's ``redis-server`` package (``.ci/run`` installs it when missing).  Without it a
test that starts a server is skipped with the reason, or fails when ``CI`` is set
(:func:`tests.system.need`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .system import need

__all__ = ["RedisServer", "free_port"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process; :meth:`stop` and :meth:`start` keep its port."""

    def __init__(self) -> None:
        self.binary = need("redis-server", "redis-server", "a test with a shared quota")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pt-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.dir),
            "--enable-debug-command", "local", "--protected-mode", "yes",
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def ping(self) -> bool:
        try:
            return self.command("PING", timeout=0.5) == b"+PONG\r\n"
        except OSError:
            return False

    def command(self, *words: str, timeout: float = 5.0) -> bytes:
        """Send one command (inline protocol); the raw first reply line."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(" ".join(words).encode() + b"\r\n")
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data

    def sleep(self, seconds: float) -> subprocess.Popen[bytes]:
        """Make the server stop answering for ``seconds`` (``DEBUG SLEEP``), in background."""
        cli = need("redis-cli", "redis-tools", "a test that pauses Redis")
        return subprocess.Popen(
            [cli, "-p", str(self.port), "DEBUG", "SLEEP", str(seconds)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
