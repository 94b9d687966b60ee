"""One ``batch`` run per output file: two real CLI processes on one output (issue 13, item 1).

Each test starts ``python -m paradigm_trio batch ... --mock`` processes that share one
output file, and checks the file holds every record exactly once, whatever the second
process did (refused, waited, interrupted while waiting).
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from .test_cli import CLI, records, run_cli, write_input

pytestmark = pytest.mark.slow  # each test runs a batch of about 12 s

N = 120  # at concurrency 2 and a median latency of 0.2 s: about 12 s of work for run A


class Run:
    """A ``batch`` process in the background, its stderr in a file (read while it runs)."""

    def __init__(self, tmp_path: Path, name: str, *args: str) -> None:
        self.err_path = tmp_path / f"{name}.err"
        self._err: IO[bytes] = self.err_path.open("wb")
        self.proc = subprocess.Popen(
            [*CLI, "batch", *args], stdout=subprocess.DEVNULL, stderr=self._err
        )

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._err.close()

    def stop(self) -> None:
        """Kill it if a failed assertion left it running."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()


Start = Callable[..., Run]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """``start(name, *args)`` starts a ``batch`` process; all are stopped at the end."""
    started: list[Run] = []

    def start(name: str, *args: str) -> Run:
        started.append(Run(tmp_path, name, *args))
        return started[-1]

    yield start
    for run in started:
        run.stop()
    # What each process said, shown with a failure (pytest prints a failed test's
    # captured output): a failure under load names its cause.
    for run in started:
        print(f"--- {run.err_path.stem} (exit {run.proc.returncode}):\n{run.stderr[-3000:]}")


@contextmanager
def frozen(run: Run) -> Iterator[None]:
    """``run`` stopped (SIGSTOP) for the duration, then continued: it keeps its lock and
    cannot finish meanwhile, however slowly the other processes start on a busy machine
    (its embedded mock is in the same process, so its requests wait with it)."""
    run.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        run.proc.send_signal(signal.SIGCONT)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def seed_one_failure(src: Path, out: Path) -> None:
    """An output as a first run leaves it: ``req-0`` failed, the rest still to run."""
    failed = {
        "id": "batch_req_x", "custom_id": "req-0", "response": None,
        "error": {"code": "APIConnectionError", "message": "connection reset"},
        "attempts": 4, "elapsed": 1.0,
    }  # fmt: skip
    out.write_text(json.dumps(failed) + "\n")
    manifest = {
        "input_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "input": str(src), "settings": {"model": None, "mock": True}, "version": 1,
    }  # fmt: skip
    Path(f"{out}.manifest.json").write_text(json.dumps(manifest))


def run_a(tmp_path: Path, start: Start, *, seeded: bool) -> tuple[Run, Path, tuple[str, ...]]:
    """Run A, on N inputs (``req-0`` failed already if ``seeded``), once it has written a
    few records; its output, and its arguments (for other runs on the same output)."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, N)
    if seeded:
        seed_one_failure(src, out)
    common = (str(src), "-o", str(out), "--mock")
    a = start("a", *common, "--concurrency", "2")  # slow: about 12 s
    wait_until(lambda: count_lines(out) >= 5, "run A's first records")
    return a, out, common


def assert_each_once(out: Path) -> list[dict[str, object]]:
    recs = records(out)
    assert sorted(str(r["custom_id"]) for r in recs) == sorted(f"req-{i}" for i in range(N))
    return recs


def test_a_second_run_on_the_same_output_is_refused_at_once(tmp_path: Path, start: Start) -> None:
    a, out, common = run_a(tmp_path, start, seeded=False)
    with frozen(a):
        t0 = time.monotonic()
        b = run_cli("batch", *common)
        assert b.returncode == 2, b.stderr
        assert time.monotonic() - t0 < 30  # at once: it does not wait for A
        assert a.proc.poll() is None  # A was still running when B gave up
    assert len(b.stderr.strip().splitlines()) == 1
    assert f"pid {a.proc.pid}" in b.stderr
    assert socket.gethostname() in b.stderr
    assert "--wait-for-lock" in b.stderr
    assert a.wait() == 0, a.stderr
    recs = assert_each_once(out)
    assert all(r["error"] is None for r in recs)
    assert not Path(f"{out}.lock").exists()  # removed by A at its end


def test_retry_failed_beside_a_running_batch_loses_nothing(tmp_path: Path, start: Start) -> None:
    """The issue's scenario: A runs; B (``--retry-failed``) starts later and is Ctrl-C'd."""
    a, out, common = run_a(tmp_path, start, seeded=True)
    with frozen(a):  # A holds the lock until B and C are done with it
        b = start("b", *common, "--retry-failed")
        assert b.wait() == 2, b.stderr  # refused: it rewrote nothing
        assert f"pid {a.proc.pid}" in b.stderr
        c = start("c", *common, "--retry-failed", "--wait-for-lock")
        wait_until(lambda: "Waiting" in c.stderr or c.proc.poll() is not None, "run C")
        assert "Waiting" in c.stderr, (c.proc.returncode, c.stderr)
        assert a.proc.poll() is None
        c.proc.send_signal(signal.SIGINT)  # Ctrl-C while it waits
        assert c.wait() == 130, c.stderr
        assert "nothing was sent" in c.stderr
    assert a.wait() == 1, a.stderr  # req-0's failure is still in the file
    recs = assert_each_once(out)
    assert [r["custom_id"] for r in recs if r["error"] is not None] == ["req-0"]
    again = run_cli("batch", *common, "--retry-failed")
    assert again.returncode == 0, again.stderr
    recs = assert_each_once(out)
    assert all(r["error"] is None for r in recs)


def test_wait_for_lock_runs_after_the_holder_ends(tmp_path: Path, start: Start) -> None:
    a, out, common = run_a(tmp_path, start, seeded=True)
    b = start("b", *common, "--retry-failed", "--wait-for-lock")
    assert a.wait() == 1, a.stderr
    assert b.wait() == 0, b.stderr
    assert f"pid {a.proc.pid}" in b.stderr  # it said whom it waited for
    assert "--retry-failed: 1 failed request(s) will run again" in b.stderr
    recs = assert_each_once(out)
    assert all(r["error"] is None for r in recs)


def test_lock_timeout_gives_up_with_exit_2(tmp_path: Path, start: Start) -> None:
    a, out, common = run_a(tmp_path, start, seeded=False)
    with frozen(a):
        b = run_cli("batch", *common, "--lock-timeout", "0.5")
        assert b.returncode == 2, b.stderr
        assert "gave up waiting" in b.stderr
        assert a.proc.poll() is None
    assert a.wait() == 0, a.stderr
    assert_each_once(out)


def test_the_lock_goes_with_sigint_and_with_kill_9(tmp_path: Path, start: Start) -> None:
    a, out, common = run_a(tmp_path, start, seeded=False)
    lock = Path(f"{out}.lock")
    a.proc.send_signal(signal.SIGINT)
    assert a.wait() == 130, a.stderr
    assert not lock.exists()
    b = start("b", *common)
    wait_until(lambda: "Resuming" in b.stderr, "run B to resume")
    b.proc.kill()  # kill -9: the lock file stays, naming a dead process
    b.wait()
    assert lock.exists()
    assert json.loads(lock.read_text())["pid"] == b.proc.pid
    c = run_cli("batch", *common)
    assert c.returncode == 0, c.stderr
    assert "Resuming" in c.stderr
    assert_each_once(out)
    assert not lock.exists()
