"""``paradigm-trio`` on Paradigm's own endpoints, as subprocesses against a mock server
process: ``batch --dry-run`` on 10,000 lines (totals from the mock's tokenizer, no chat
request sent, nothing written), a mixed batch file (one record per line), and
``upload`` of 200 files killed with ``kill -9`` mid-run, then resumed (each file held
once by the mock, 200 lines)."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from .test_cli import CLI, env_for, run_cli


def _mock(*flags: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mock_server", "--port", "0", "--seed", "7", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+/api/v2)", line)
    assert match, line
    return proc, match.group(1)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover
        proc.kill()
        proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()


@pytest.fixture
def faulty_mock() -> Iterator[str]:
    proc, url = _mock("--latency", "fixed:0.01", "--fault", "server_error=0.05",
                      "--fault", "rate_limit=0.03", "--retry-after", "0.05",
                      "--file-processing-time", "0.2")  # fmt: skip
    try:
        yield url
    finally:
        _stop(proc)


def _admin(url: str, path: str) -> dict[str, list[dict[str, object]]]:
    root = url.removesuffix("/api/v2")
    return httpx2.get(root + path, timeout=10).json()


def test_dry_run_on_ten_thousand_lines(faulty_mock: str, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    expected = 0
    with source.open("w") as f:
        for i in range(10_000):
            text = f"Question {i}: " + "why " * (i % 37)
            expected += 3 + 4 + math.ceil(len(text) / 4)  # the mock's tokenizer
            body = {"model": "alfred-4.2", "max_tokens": 100,
                    "messages": [{"role": "user", "content": text}]}  # fmt: skip
            f.write(json.dumps({"custom_id": f"r{i}", "url": "/v1/chat/completions",
                                "body": body}) + "\n")  # fmt: skip
    before = set(tmp_path.iterdir())
    done = run_cli(
        "batch", str(source), "--dry-run", "--concurrency", "32", "--max-attempts", "12",
        "--rpm", "600",
        "--tpm", "100000", "--context-length", "40", env=env_for(faulty_mock), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Lines: 10000 (10000 request(s), 0 invalid)" in out
    assert f"Prompt tokens: {expected:,} (10000 line(s) counted" in out
    assert "max_tokens: 1,000,000 at most" in out
    total = expected + 1_000_000
    assert f"at least {max(10_000 / 600, total / 100_000):,.1f} min" in out
    over = sum(3 + 4 + math.ceil(len(f"Question {i}: " + "why " * (i % 37)) / 4) + 100 > 40
               for i in range(10_000))  # fmt: skip
    assert f"{over} line(s)" in out
    assert set(tmp_path.iterdir()) == before  # nothing written
    log = _admin(faulty_mock, "/_mock/requests")
    records = log["data"]  # type: ignore[index]
    paths = {r["path"] for r in records}
    assert not any(p.endswith("/chat/completions") for p in paths)
    assert any(p.endswith("/tokenize") for p in paths)


def test_mixed_batch_file_one_record_per_line(faulty_mock: str, tmp_path: Path) -> None:
    lines = [
        {"custom_id": "c", "url": "/v1/chat/completions",
         "body": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}},
        {"custom_id": "e", "url": "/v1/embeddings", "body": {"input": "embed me"}},
        {"custom_id": "t", "url": "/api/v2/tokenize", "body": {"prompt": "count me"}},
        {"custom_id": "q", "url": "/query", "body": {"query": "anything", "n": 2}},
        {"custom_id": "f", "url": "/v1/filter/chunks",
         "body": {"query": "x", "chunk_ids": ["3c90c3cc-0d44-4b50-8888-8dd25736052a"]}},
        {"custom_id": "d", "url": "/chat/document-search",
         "body": {"query": "what?", "company_scope": True}},
        {"custom_id": "bad", "url": "/v1/unknown", "body": {}},
    ]  # fmt: skip
    source = tmp_path / "mixed.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    output = tmp_path / "out.jsonl"
    done = run_cli("batch", str(source), "-o", str(output), env=env_for(faulty_mock))
    records = {r["custom_id"]: r for r in map(json.loads, output.read_text().splitlines())}
    assert set(records) == {line["custom_id"] for line in lines}
    for ok in ("c", "e", "t", "q", "d"):
        assert records[ok]["error"] is None, records[ok]
        assert records[ok]["response"]["status_code"] == 200
    assert records["t"]["response"]["body"]["total_tokens"] == math.ceil(len("count me") / 4)
    assert isinstance(records["q"]["response"]["body"], list)
    assert records["bad"]["error"]["code"] == "invalid_request"
    assert done.returncode == 1  # the invalid line (and /filter/chunks may 4xx: no chunk)


def test_upload_killed_then_resumed_holds_each_file_once(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(200):
        (folder / f"doc-{i:03d}.txt").write_text(f"document {i}: " + "words " * (i % 50))
    proc, url = _mock("--latency", "fixed:0.05", "--fault", "server_error=0.05",
                      "--retry-after", "0.05")  # fmt: skip
    try:
        output = tmp_path / "uploaded.jsonl"
        args = ["upload", str(folder), "-o", str(output), "--collection-type", "company",
                "--concurrency", "4", "-q"]  # fmt: skip
        runner = subprocess.Popen([*CLI, *args], env=env_for(url),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            not output.exists() or output.read_bytes().count(b"\n") < 60
        ):
            time.sleep(0.02)
        runner.kill()  # kill -9, mid-run
        runner.wait()
        cut = output.read_bytes().count(b"\n")
        assert 60 <= cut < 200
        done = run_cli(*args, env=env_for(url), timeout=120)
        assert done.returncode == 0, done.stderr
        records = [json.loads(line) for line in output.read_text().splitlines()]
        held = _admin(url, "/_mock/files")
    finally:
        _stop(proc)
    files = held["data"]  # type: ignore[index]
    assert len(records) == 200
    assert len({r["path"] for r in records}) == 200
    assert len(files) == 200
    assert len({f["sha256"] for f in files}) == 200
    assert {r["file_id"] for r in records} == {f["id"] for f in files}
