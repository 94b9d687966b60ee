"""The repeats of a batch, end to end: ``paradigm-trio batch`` against the mock as a
process, counted from the server's side (``GET /_mock/stats``)."""

from __future__ import annotations

import json
from pathlib import Path

from .mockprocess import mock_process, mock_stats
from .test_cli import env_for, records, run_cli

LINES, UNIQUE = 1000, 700


def write_repeats(path: Path) -> None:
    """1,000 deterministic lines (``temperature`` 0), of which 300 repeat a body of the
    first 700 under a custom_id of their own."""
    with path.open("w") as f:
        for i in range(LINES):
            body = {
                "model": "alfred-4.2",
                "temperature": 0,
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"Hello {i % UNIQUE}"}],
            }
            line = {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions"}
            f.write(json.dumps({**line, "body": body}) + "\n")


def by_id(path: Path) -> dict[str, dict[str, object]]:
    return {str(r["custom_id"]): r for r in records(path)}


def test_duplicate_lines_are_sent_once_and_each_has_its_record(tmp_path: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_repeats(source)
    with mock_process("--seed", "1", "--latency", "fixed:0.01") as url:
        done = run_cli("batch", str(source), "-o", str(out), "--concurrency", "50", "-q",
                       "--report", str(tmp_path / "summary.json"), env=env_for(url))  # fmt: skip
        stats = mock_stats(url)
    assert done.returncode == 0, done.stderr
    assert stats["total"] == UNIQUE
    results = by_id(out)
    assert len(records(out)) == LINES
    assert sorted(results) == sorted(f"req-{i}" for i in range(LINES))
    for i in range(UNIQUE, LINES):
        duplicate, first = results[f"req-{i}"], results[f"req-{i - UNIQUE}"]
        assert duplicate["deduplicated"] is True
        assert duplicate["attempts"] == 0
        assert duplicate["response"] == first["response"]  # the answer, shared
        assert "deduplicated" not in first
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["succeeded"], summary["deduplicated"]) == (LINES, LINES - UNIQUE)


def test_dedupe_off_sends_every_line(tmp_path: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_repeats(source)
    with mock_process("--seed", "1") as url:
        done = run_cli("batch", str(source), "-o", str(out), "--concurrency", "50", "-q",
                       "--dedupe", "off", env=env_for(url))  # fmt: skip
        stats = mock_stats(url)
    assert done.returncode == 0, done.stderr
    assert stats["total"] == LINES
    assert not any("deduplicated" in r for r in records(out))


def test_a_rerun_with_the_cache_sends_nothing_and_writes_the_same_records(
    tmp_path: Path,
) -> None:
    source, cache = tmp_path / "in.jsonl", tmp_path / "answers.sqlite"
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    write_repeats(source)
    with mock_process("--seed", "1", "--latency", "fixed:0.01") as url:
        env = env_for(url)
        ran = run_cli("batch", str(source), "-o", str(first), "--cache", str(cache), "-q",
                      "--concurrency", "50", env=env)  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert mock_stats(url)["total"] == UNIQUE
        rerun = run_cli("batch", str(source), "-o", str(second), "--cache", str(cache), "-q",
                        "--concurrency", "50", "--report", str(tmp_path / "summary.json"),
                        env=env)  # fmt: skip
        assert rerun.returncode == 0, rerun.stderr
        assert mock_stats(url)["total"] == UNIQUE  # not one more request
    before, after = by_id(first), by_id(second)
    assert len(records(second)) == LINES
    assert sorted(before) == sorted(after)
    # The same records, apart from timings and how each answer came.
    how = {"elapsed", "started_at", "finished_at", "concurrency", "failures", "attempts",
           "cached", "deduplicated"}  # fmt: skip
    for custom_id, record in before.items():
        again = after[custom_id]
        assert {k: v for k, v in again.items() if k not in how} == {
            k: v for k, v in record.items() if k not in how
        }
        assert again["attempts"] == 0
        assert again.get("cached") or again.get("deduplicated")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["cached"], summary["deduplicated"]) == (UNIQUE, LINES - UNIQUE)
    assert cache.exists()
    assert b"sk-test-not-a-real-key" not in b"".join(
        p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("answers")
    )


def test_hedging_against_stragglers_keeps_one_record_per_line(tmp_path: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = 400
    with source.open("w") as f:
        for i in range(lines):
            body = {"model": "alfred-4.2", "max_tokens": 8,
                    "messages": [{"role": "user", "content": f"Hello {i}"}]}  # fmt: skip
            f.write(json.dumps({"custom_id": f"req-{i}", "body": body}) + "\n")
    with mock_process(
        "--seed", "2", "--latency", "lognormal:0.05,0.3", "--fault", "straggler=0.03:40x"
    ) as url:
        report = str(tmp_path / "s.json")
        done = run_cli("batch", str(source), "-o", str(out), "--concurrency", "40", "-q",
                       "--hedge", "--report", report, env=env_for(url))  # fmt: skip
        stats = mock_stats(url)
    assert done.returncode == 0, done.stderr
    results = by_id(out)
    assert len(records(out)) == lines
    assert sorted(results) == sorted(f"req-{i}" for i in range(lines))
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["hedges"] >= 1  # 3 % of the lines straggle 40 times over
    assert summary["hedges"] <= 0.05 * lines
    # No retries (no faults): every line reached the server once, plus at most the hedges
    # (a hedge started just as its original answered is cut, maybe before its request
    # reached the server: on a loaded machine that happens).
    assert lines <= stats["total"] <= lines + summary["hedges"]
    assert sum(1 for r in results.values() if r.get("hedged")) == summary["hedges_won"]
