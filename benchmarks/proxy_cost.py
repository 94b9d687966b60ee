"""Scenario 8: the client's CPU per request through a forward proxy, against direct.

paradigm-trio sends the same requests as in scenario 2 to the raw server, over HTTP and
over HTTPS (a certificate from a throwaway CA), directly and through ``proxy.py`` (a real
forward proxy, a child process on 127.0.0.1): ``http`` URLs are forwarded in absolute
form, ``https`` ones go through ``CONNECT`` tunnels kept alive like any connection.  The
figure is the client process's CPU over the measured requests, divided by their number;
best of ``rounds``, each in a fresh process.  *proxy ms/request* is the proxy's CPU (its
worker processes included) over the same requests: the cost moved to the proxy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._common import PYTHON, ROOT, Section, Table, child_env, raw_server, run_worker

CONCURRENCY = 64


class ProxyProcess:
    """``python -m proxy`` on 127.0.0.1 (a free port), in a process group of its own."""

    def __init__(self, folder: Path) -> None:
        port_file = folder / "proxy.port"
        self.process = subprocess.Popen(
            [PYTHON, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0",
             "--port-file", str(port_file), "--num-workers", "1", "--num-acceptors", "1",
             "--log-level", "ERROR", "--timeout", "30"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env(), cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("proxy.py did not start (pip install proxy.py)")
            time.sleep(0.05)
        time.sleep(0.3)  # the port file comes just before the listening socket
        self.url = f"http://127.0.0.1:{port_file.read_text().strip()}"

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by every process of the proxy's group (Linux)."""
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == self.process.pid:  # the process group
                    total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@contextlib.contextmanager
def forward_proxy(folder: Path) -> Iterator[ProxyProcess]:
    proxy = ProxyProcess(folder)
    try:
        yield proxy
    finally:
        proxy.stop()


def _measure(url: str, client: dict[str, Any], n: int, rounds: int,
             proxy: ProxyProcess | None) -> dict[str, Any]:  # fmt: skip
    """The best of ``rounds`` runs, with the proxy's CPU per request of that run."""
    best: dict[str, Any] | None = None
    for _ in range(rounds):
        before = proxy.cpu_seconds() if proxy else 0.0
        result = run_worker(
            {"kind": "drive", "peer": "paradigm-trio", "url": url, "n": n,
             "concurrency": CONCURRENCY, "warmup": 2 * CONCURRENCY, "limit": 180,
             "client": client},
            timeout=300,
        )  # fmt: skip
        if "failed" in result:
            return result
        result["proxy_cpu"] = (proxy.cpu_seconds() - before) if proxy else None
        if best is None or result["cpu"] < best["cpu"]:
            best = result
    assert best is not None
    return best


SIZES = {True: (1_500, 1), False: (4_000, 2)}
"""``quick`` -> (requests, rounds)."""

INTRO = (
    "paradigm-trio sends {n:,} requests at concurrency {c} (after a warm-up of {w}) to the "
    "raw server over HTTP and over HTTPS (a throwaway CA), directly and through "
    "`proxy.py`, a real forward proxy (a child process, one worker): `http` URLs are "
    "forwarded in absolute form, `https` ones go through `CONNECT` tunnels that are kept "
    "alive and reused.  Best of {rounds} round(s), each in a fresh process.  *proxy "
    "ms/request* is the proxy's own CPU (warm-up included), the cost it takes on."
)


def run(quick: bool) -> Section:
    n, rounds = SIZES[quick]
    intro = INTRO.format(n=n, c=CONCURRENCY, w=2 * CONCURRENCY, rounds=rounds)
    section = Section("proxy", "9. Through a forward proxy: CPU per request against direct", intro)
    table = Table(
        f"paradigm-trio, {n:,} requests at concurrency {CONCURRENCY}",
        ["route", "client CPU ms/request", "vs direct", "requests/s", "wall s",
         "proxy ms/request", "errors"],
        align="lrrrrrr",
    )  # fmt: skip
    import mock_server

    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        folder = Path(tmp)
        tls = mock_server.throwaway_ca(folder / "ca", ["127.0.0.1"])
        with (
            raw_server(0.0) as plain,
            raw_server(0.0, tls.certfile, tls.keyfile) as secure,
            forward_proxy(folder) as proxy,
        ):
            cases = [
                ("http, direct", plain.url, {}, None),
                ("http, through the proxy", plain.url, {"proxy": proxy.url}, proxy),
                ("https, direct", secure.url, {"verify": tls.ca}, None),
                ("https, through the proxy (CONNECT)", secure.url,
                 {"proxy": proxy.url, "verify": tls.ca}, proxy),
            ]  # fmt: skip
            direct: dict[str, float] = {}
            for label, url, client, via in cases:
                result = _measure(url, client, n, rounds, via)
                table.rows.append(_row(label, result, n, direct))
    table.notes.append(
        "The proxy adds no work per request to the client beyond the absolute-form target "
        "and its headers (`http`), or nothing at all once a tunnel is open (`https`): the "
        "requests of a batch share the tunnels opened for its first requests."
    )
    section.tables.append(table)
    return section


def _row(label: str, result: dict[str, Any], n: int, direct: dict[str, float]) -> list[Any]:
    scheme = label.split(",")[0]
    if "failed" in result:
        return [label, None, None, None, None, None, result["failed"]]
    done = result["ok"] + result["errors"]
    cpu = result["cpu"] / max(done, 1) * 1000
    direct.setdefault(scheme, cpu)
    proxy_ms = None
    if result["proxy_cpu"] is not None:
        proxy_ms = result["proxy_cpu"] / (n + 2 * CONCURRENCY) * 1000
    return [
        label, cpu, f"{cpu / direct[scheme]:.2f}x", done / result["wall"], result["wall"],
        proxy_ms, result["errors"] + result["unfinished"],
    ]  # fmt: skip
