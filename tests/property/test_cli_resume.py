"""Property 8: killing the CLI at a random point and resuming gives the uninterrupted result.

``python -m paradigm_trio batch IN -o OUT`` runs against a mock server *process*
(``python -m mock_server --port 0``), scripted over HTTP (``POST /_mock/script``) so that
every request's fate is a function of its ``custom_id`` alone, whatever attempt number
the server has reached (a kill can waste attempts): it succeeds at once, succeeds after
transient failures, fails at once (non-retryable), or exhausts its attempts.  For each
example the batch runs once uninterrupted, then again (on a reset server) killed with
SIGKILL after a random number of records, then resumed with the same command.  The final
files must hold the same ``custom_id``s, once each, and the same ones must have succeeded.

Each example costs three CLI processes (about 2 to 3 seconds), hence few examples.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .strategies import key_of

CLI = [sys.executable, "-m", "paradigm_trio", "batch"]
MAX_ATTEMPTS = 3
SCRIPT_LENGTH = 10  # longer than the attempts of three runs: a kill never reaches its end

# What a request's script is, by fate (Retry-After of 10 ms keeps retries fast).
FATES: dict[str, list[Any]] = {
    "ok": [],
    "transient1": [{"kind": "503", "retry_after": 0.01}],
    "transient2": [{"kind": "429", "retry_after": 0.01}, {"kind": "502", "retry_after": 0.01}],
    "fatal": ["400"] * SCRIPT_LENGTH,
    "exhausted": [{"kind": "503", "retry_after": 0.01}] * SCRIPT_LENGTH,
}
RETRIES = {"ok": 0, "transient1": 1, "transient2": 2, "fatal": 0, "exhausted": MAX_ATTEMPTS - 1}
SUCCEEDS = {"ok": True, "transient1": True, "transient2": True, "fatal": False, "exhausted": False}


@st.composite
def fates(draw: st.DrawFn) -> dict[str, str]:
    """``{custom_id: fate}``, with at most 10 retries in all (the batch retry budget's floor,
    so the budget never decides an outcome)."""
    n = draw(st.integers(8, 30))
    weighted = ["ok"] * 6 + ["transient1", "transient2", "fatal", "exhausted"]
    out: dict[str, str] = {}
    retries = 0
    for i in range(n):
        fate = draw(st.sampled_from(weighted))
        if retries + RETRIES[fate] > 10:
            fate = "ok"
        retries += RETRIES[fate]
        out[f"req-{i}"] = fate
    return out


class MockProcess:
    """``python -m mock_server`` on 127.0.0.1, controlled over its admin routes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mock_server", "--port", "0", "--seed", "5",
             "--latency", "fixed:0.03"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)(/api/v2)", line)
        assert match, line
        self.root = match.group(1)
        self.url = match.group(1) + match.group(2)

    def post(self, path: str, body: object) -> None:
        request = urllib.request.Request(
            self.root + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def prepare(self, schedule: dict[str, str]) -> None:
        self.post("/_mock/reset", {})
        for cid, fate in schedule.items():
            if FATES[fate]:
                self.post("/_mock/script", {"key": key_of(cid), "outcomes": FATES[fate]})

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def mock_process() -> Iterator[MockProcess]:
    mock = MockProcess()
    try:
        yield mock
    finally:
        mock.stop()


def write_input(path: Path, schedule: dict[str, str]) -> None:
    with path.open("w") as f:
        for cid in schedule:
            line = {"custom_id": cid, "max_tokens": 8,
                    "messages": [{"role": "user", "content": f"Hello {cid}"}]}  # fmt: skip
            f.write(json.dumps(line) + "\n")


def command(src: Path, out: Path) -> list[str]:
    return [*CLI, str(src), "-o", str(out), "--concurrency", "3",
            "--max-attempts", str(MAX_ATTEMPTS), "--timeout", "10", "-q"]  # fmt: skip


def final_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@settings(max_examples=6, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=fates(), kill_fraction=st.floats(0.0, 1.0))
def test_kill_and_resume_gives_the_uninterrupted_record_set(
    mock_process: MockProcess, tmp_path_factory: pytest.TempPathFactory,
    schedule: dict[str, str], kill_fraction: float,
) -> None:  # fmt: skip
    tmp = tmp_path_factory.mktemp("resume")
    src = tmp / "in.jsonl"
    write_input(src, schedule)
    env = {
        **os.environ,
        "PARADIGM_BASE_URL": mock_process.url,
        "PARADIGM_API_KEY": "sk-test-not-a-real-key",
    }

    # the uninterrupted run
    full = tmp / "full.jsonl"
    mock_process.prepare(schedule)
    done = subprocess.run(command(src, full), env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode in (0, 1), done.stderr

    # killed after a random number of records (0: before anything is written), then resumed
    out = tmp / "out.jsonl"
    mock_process.prepare(schedule)
    kill_after = int(kill_fraction * len(schedule))
    proc = subprocess.Popen(command(src, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    limit = time.monotonic() + 60
    while proc.poll() is None and count_lines(out) < kill_after and time.monotonic() < limit:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = count_lines(out)
    resumed = subprocess.run(command(src, out), env=env, capture_output=True, text=True,
                             timeout=120, check=False)  # fmt: skip
    assert resumed.returncode in (0, 1), resumed.stderr

    want, got = final_records(full), final_records(out)
    got_ids = [r["custom_id"] for r in got]
    assert len(got_ids) == len(set(got_ids)), f"duplicated records after a kill at {written}"
    assert sorted(got_ids) == sorted(r["custom_id"] for r in want) == sorted(schedule)
    succeeded = {r["custom_id"] for r in got if r["error"] is None}
    assert succeeded == {r["custom_id"] for r in want if r["error"] is None}
    assert succeeded == {cid for cid, fate in schedule.items() if SUCCEEDS[fate]}
