"""The command line's observability: ``-v`` / ``--log-format json``, and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path

from .test_cli import env_for, mock_url, run_cli, write_input

__all__ = ["mock_url"]  # (the fixture, used by name)

KEY = "sk-test-not-a-real-key"


def test_verbose_json_logs_carry_the_fields(tmp_path: Path, mock_url: str) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 40)
    proc = run_cli(
        "batch", str(src), "-o", str(out), "--concurrency", "4", "-vv", "--log-format", "json",
        env=env_for(mock_url),
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert events[0] == "batch_started"
    assert events[-1] == "batch_finished"
    assert events.count("request_succeeded") == sum(
        1 for line in out.read_text().splitlines() if json.loads(line)["error"] is None
    )
    failed = [line for line in lines if line["event"] == "attempt_failed"]
    assert failed, "the mock's faults (10 % 500s, resets, 429s) make some attempts fail"
    for line in failed:
        assert line["custom_id"].startswith("req-")
        assert line["attempt"] >= 1
        assert line["cause"]
        assert line["level"] == "DEBUG"
        assert line["logger"] == "paradigm_trio"
    for line in lines:
        if line["event"] == "retry_scheduled":
            assert line["wait"] >= 0
    finished = lines[-1]
    assert finished["done"] == 40
    assert KEY not in proc.stderr


def test_verbose_text_tells_the_batch_without_a_line_per_request(
    tmp_path: Path, mock_url: str
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 30)
    proc = run_cli("batch", str(src), "-o", str(out), "-v", env=env_for(mock_url))
    assert proc.returncode in (0, 1), proc.stderr
    assert " INFO chat batch started (concurrency 64)" in proc.stderr
    assert " INFO chat batch finished: 30 done" in proc.stderr
    assert "embeddings batch" not in proc.stderr  # no embeddings line: no such batch
    assert "succeeded after" not in proc.stderr  # per-request lines are DEBUG
    assert KEY not in proc.stderr


def test_without_verbose_nothing_is_logged(tmp_path: Path, mock_url: str) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 5)
    proc = run_cli("batch", str(src), "-o", str(out), "-q", env=env_for(mock_url))
    assert "batch started" not in proc.stderr
    assert "attempt" not in proc.stderr
