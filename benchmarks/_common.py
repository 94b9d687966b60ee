"""Shared pieces: the workload, result tables, the machine, child processes and servers."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

#: The reference page's 20 names and prompt (one request per name, cycled for larger N).
NAMES = (
    "Alice", "Bob", "Charlie", "David", "Emma", "Frank", "Grace", "Hannah", "Ian", "Jessica",
    "Kevin", "Linda", "Michael", "Nancy", "Olivia", "Peter", "Quincy", "Rachel", "Samuel",
    "Tiffany",
)  # fmt: skip
PROMPT = (
    "Say hello to the new user on Paradigm! Give a short one-sentence highly personalized "
    "welcome to: {}"
)
MODEL = "alfred-4.2"
API_KEY = "bench-key"

#: Peers, in table order.  ``paradigm-trio`` is last so it reads as the conclusion.
PEERS = ("aiohttp", "openai", "httpx", "httpx2", "paradigm-trio")
PEER_LABELS = {
    "aiohttp": "seed recipe: aiohttp + asyncio.gather",
    "openai": "openai AsyncOpenAI under trio",
    "httpx": "httpx 0.28 under trio",
    "httpx2": "httpx2 under trio",
    "paradigm-trio": "**paradigm-trio**",
    "floor": "floor: bare trio sockets, no HTTP library",
}
PACKAGES = ("paradigm-trio", "trio", "httpx2", "httpcore2", "httpx", "httpcore", "aiohttp",
            "openai", "litellm", "hypercorn", "quart-trio", "h11", "anyio", "py-spy")  # fmt: skip


def messages(i: int) -> list[dict[str, str]]:
    """The messages of request number ``i``."""
    return [{"role": "user", "content": PROMPT.format(NAMES[i % len(NAMES)])}]


def body(i: int) -> dict[str, Any]:
    """The JSON body every peer sends for request ``i``."""
    return {"model": MODEL, "messages": messages(i), "temperature": 0.4, "max_tokens": 150}


def idempotency_key(custom_id: str) -> str:
    """The ``Idempotency-Key`` paradigm-trio sends for ``custom_id`` (so peers can match it)."""
    return "pt-" + hashlib.sha256(custom_id.encode("utf-8")).hexdigest()[:32]


# ---------------------------------------------------------------------- result tables


@dataclass
class Table:
    """One table of results, printed to the terminal and written to docs/performance.md."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    align: str = ""  # one of "l"/"r" per column; default: first left, rest right

    def markdown(self) -> str:
        align = self.align or "l" + "r" * (len(self.columns) - 1)
        cells = [[_cell(v) for v in row] for row in self.rows]
        lines = [
            "| " + " | ".join(self.columns) + " |",
            "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if 0 < abs(value) < 0.01:
            return "< 0.01"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@dataclass
class Section:
    """A scenario's output: prose, tables, the targets it judged, optional profile text."""

    key: str
    title: str
    intro: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    profile: str = ""
    seconds: float = 0.0
    foreign_cpu: float | None = None  # share of the machine's CPU used by other processes


@dataclass
class Target:
    """A target of paradigm-trio (issue 8) beside its measured figure."""

    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured (e.g. a scenario was skipped or failed)


# ---------------------------------------------------------------------- the machine


def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return None


def machine_lines() -> list[str]:
    mem = memory_gib()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return [
        f"- CPU: {os.cpu_count()} cores, {cpu_model()}" + (f"; {mem:.0f} GiB RAM" if mem else ""),
        f"- OS: {platform.system()} {platform.release()} ({platform.machine()}); "
        f"open files limit {soft}/{hard}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        "- Packages: " + ", ".join(f"{name} {version(name)}" for name in PACKAGES),
    ]


# ---------------------------------------------------------------------- child processes


def child_env() -> dict[str, str]:
    """The environment of a child: the project on the path, no HTTP proxy (127.0.0.1 only)."""
    path = os.environ.get("PYTHONPATH", "")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    return env


def run_worker(
    task: dict[str, Any], *, timeout: float, prefix: Sequence[str] = ()
) -> dict[str, Any]:
    """Run ``python -m benchmarks._worker TASK`` in a fresh process; return its JSON result.

    A crash or a timeout is returned as ``{"failed": "why"}`` (the process is killed), so
    one broken peer never stops the suite.  ``prefix`` wraps the command (e.g. py-spy).
    """
    command = [*prefix, PYTHON, "-m", "benchmarks._worker", json.dumps(task)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=child_env(), cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return {"failed": f"killed after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"failed": f"exit {done.returncode}: {tail[:200]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class ServerProcess:
    """A server in a child process (the raw server or the mock), stopped on exit."""

    def __init__(self, command: Sequence[str], name: str) -> None:
        self.name = name
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=child_env(),
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the server prints its URL once bound
        if "http://" not in line and "https://" not in line:
            self.stop()
            raise RuntimeError(f"{name} did not start (printed {line!r})")
        self.url = line[line.index("http") :].strip()
        self.root_url = self.url.removesuffix("/api/v2")

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds used so far by the server process (Linux)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def raw_server(latency: float = 0.0, *tls: str) -> Iterator[ServerProcess]:
    """The minimal asyncio server (``benchmarks._rawserver``) in a child process; over
    HTTPS with ``tls`` (its certificate file, then its key file)."""
    flags = ["--certfile", tls[0], "--keyfile", tls[1]] if tls else []
    server = ServerProcess(
        [PYTHON, "-m", "benchmarks._rawserver", "--port", "0", "--latency", repr(latency),
         *flags],
        "raw server",
    )  # fmt: skip
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def mock_process(*flags: str) -> Iterator[ServerProcess]:
    """``python -m mock_server --port 0 FLAGS`` in a child process."""
    server = ServerProcess([PYTHON, "-m", "mock_server", "--port", "0", *flags], "mock server")
    try:
        yield server
    finally:
        server.stop()


def http_json(method: str, url: str, payload: object = None, timeout: float = 30) -> Any:
    """A tiny blocking JSON request to one of our own servers (admin routes)."""
    import urllib.request

    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def busy_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine has been busy, CPU seconds of this process tree).

    The difference between two readings, per interval, is the CPU that *other* processes
    used meanwhile: on a shared machine, the noise in every figure of that interval.
    Children count once they have been waited for (every worker and server here is).
    """
    mine = os.times()
    own = mine.user + mine.system + mine.children_user + mine.children_system
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(x) for x in fields]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        busy = (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        busy = math.nan
    return busy, own


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
