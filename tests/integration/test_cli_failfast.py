"""``paradigm-trio batch`` fails fast and says why: a wrong key or URL stops a run after a
few requests with one line and exit code 3; a refused run writes no file; the summary
groups failures by cause.  Subprocesses against a mock server process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .mockprocess import mock_process
from .test_cli import CLI, records, run_cli, write_input

KEY = "sk-the-right-key-123"


@pytest.fixture(scope="module")
def keyed_mock() -> Iterator[str]:
    """A mock server process that wants ``KEY`` (any other gets a 401) and one model
    (another gets a 400)."""
    with mock_process("--api-key", KEY, "--latency", "fixed:0.05", "--models", "alfred-4.2") as url:
        yield url


def env(url: str, key: str | None = KEY) -> dict[str, str]:
    result = {k: v for k, v in os.environ.items() if not k.startswith("PARADIGM_")}
    result["PARADIGM_BASE_URL"] = url
    if key is not None:
        result["PARADIGM_API_KEY"] = key
    return result


def sent(url: str) -> int:
    import httpx2

    root = url.removesuffix("/api/v2")
    return int(httpx2.get(f"{root}/_mock/stats").json()["total"])


def test_a_wrong_key_stops_the_run_after_a_few_requests(tmp_path: Path, keyed_mock: str) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 2000)
    before = sent(keyed_mock)
    run = run_cli("batch", str(src), "-o", str(out), "--concurrency", "8",
                  env=env(keyed_mock, "sk-a-wrong-key-456"))  # fmt: skip
    assert run.returncode == 3, run.stderr
    assert sent(keyed_mock) - before <= 8 + 10 - 1
    lines = [line for line in run.stderr.splitlines() if "stopped after" in line]
    assert len(lines) == 1
    assert "401" in lines[0]
    assert "PARADIGM_API_KEY" in lines[0]
    assert records(out) == []  # no error record for what was not sent
    fixed = run_cli("batch", str(src), "-o", str(out), "-q", "--concurrency", "64",
                    env=env(keyed_mock))  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr
    assert len(records(out)) == 2000


def test_a_wrong_path_stops_the_run_naming_the_base_url(tmp_path: Path, keyed_mock: str) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 500)
    wrong = keyed_mock.removesuffix("/api/v2") + "/api/v3"
    run = run_cli("batch", str(src), "-o", str(out), "--concurrency", "4", env=env(wrong))
    assert run.returncode == 3, run.stderr
    assert "404" in run.stderr
    assert "--base-url" in run.stderr


def test_a_few_bad_items_among_good_ones_run_to_the_end(tmp_path: Path, keyed_mock: str) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 30)
    with src.open("a") as f:
        for i in range(3):
            body = {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}
            f.write(json.dumps({"custom_id": f"bad-{i}", "body": body}) + "\n")
    run = run_cli("batch", str(src), "-o", str(out), "-q", env=env(keyed_mock))
    assert run.returncode == 1, run.stderr
    assert len(records(out)) == 33
    assert "by cause" in run.stderr
    [group] = [line for line in run.stderr.splitlines() if line.startswith("  3 x ")]
    assert "400" in group
    assert "--retry-failed" in run.stderr


@pytest.mark.parametrize(
    ("environment", "extra", "words"),
    [
        ({"PARADIGM_BASE_URL": "http://127.0.0.1:9/api/v2"}, (), "no API key"),
        ({"PARADIGM_API_KEY": KEY}, ("--base-url", "127.0.0.1:8000/api/v2"), "--base-url"),
        ({"PARADIGM_API_KEY": KEY}, ("--ca-bundle", "/nonexistent.pem"), "nonexistent"),
        ({"PARADIGM_API_KEY": KEY}, ("--insecure", "--ca-bundle", "x.pem"), "contradict"),
    ],
)
def test_a_refused_run_creates_no_file(
    tmp_path: Path, environment: dict[str, str], extra: tuple[str, ...], words: str
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 3)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARADIGM_")}
    run = run_cli("batch", str(src), "-o", str(out), *extra, env={**clean, **environment})
    assert run.returncode == 2
    assert words in run.stderr
    assert "Client()" not in run.stderr
    assert "api_key=" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_a_refused_resume_of_another_input_creates_no_file(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 3)
    assert run_cli("batch", str(src), "-o", str(out), "--mock", "-q").returncode == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    write_input(src, 4)
    run = run_cli("batch", str(src), "-o", str(out), "--mock", "-q")
    assert run.returncode == 2
    assert "different input" in run.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {
        **before,
        "in.jsonl": src.read_bytes(),
    }


@pytest.mark.parametrize("key", ["abc", "", "x y"])
def test_mock_takes_any_key(tmp_path: Path, key: str) -> None:
    """``--mock`` uses a key of its own: whatever ``PARADIGM_API_KEY`` holds is no matter."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 3)
    environment = {**{k: v for k, v in os.environ.items() if k != "PARADIGM_API_KEY"},
                   "PARADIGM_API_KEY": key}  # fmt: skip
    run = run_cli("batch", str(src), "-o", str(out), "--mock", "-q", env=environment)
    assert run.returncode == 0, run.stderr
    speed = run_cli("speed-test", "--mock", "-n", "2", "--no-replies", env=environment)
    assert speed.returncode == 0, speed.stderr


def test_an_unreachable_redis_is_said_naming_the_url_and_what_the_run_does(
    tmp_path: Path,
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 20)
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"redis://app:s3cret@127.0.0.1:{port}/0"
    proc = subprocess.Popen(
        [*CLI, "batch", str(src), "-o", str(out), "--mock", "-q", "--rpm", "600",
         "--redis", url],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the first thing it says (it sends nothing)
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[1]
    assert line.startswith("Shared quota 'paradigm-trio': Redis at ")
    assert f"redis://app:***@127.0.0.1:{port}/0" in line
    assert "this run waits: nothing is sent" in line
    assert "s3cret" not in line + rest
    assert proc.returncode == 130
    assert records(out) == []
