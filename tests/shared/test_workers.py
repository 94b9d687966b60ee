"""Several ``paradigm-trio batch`` processes on one quota: shards, ``--redis``, ``merge``.

The multi-process runs start a mock process with a quota (``--rpm``), a real
redis-server, and three CLI workers each given the *full* quota, then merge their
outputs.  Judged from the mock's counters and the merged file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from paradigm_trio.cli import main
from paradigm_trio.cli._shard import Shard, check_worker_args, shard_of

from ..redis_helpers import RedisServer
from .conftest import QUOTA, mock_arrivals
from .conftest import mock_outcomes as _stats

CLI = [sys.executable, "-m", "paradigm_trio"]


# ---------------------------------------------------------------- shards


def test_shard_of_is_pinned() -> None:
    """SHA-256 based: the same on every machine and Python version (not hash())."""
    assert [shard_of(f"r{i}", 4) for i in range(8)] == [2, 1, 1, 0, 0, 2, 1, 3]
    assert shard_of("é", 7) == 3
    assert shard_of("", 3) == 1


def test_shards_partition_the_ids() -> None:
    ids = [f"req-{i}" for i in range(3000)]
    shards = [Shard(i, 3) for i in range(3)]
    owners = [[s for s in shards if s.owns(i)] for i in ids]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(1 for o in owners if o[0] == s) for s in shards]
    assert all(900 <= size <= 1100 for size in sizes)


def _args(**given: object) -> argparse.Namespace:
    return argparse.Namespace(**{"shard": None, "redis": None, "redis_name": "q", **given})


def test_shard_defaults_from_a_kubernetes_indexed_job() -> None:
    args = _args()
    check_worker_args(args, {"JOB_COMPLETION_INDEX": "2", "JOB_COMPLETIONS": "5"})
    assert args.shard == Shard(2, 5)
    assert args.shared is None
    given = _args(shard=Shard(0, 2))
    check_worker_args(given, {"JOB_COMPLETION_INDEX": "2", "JOB_COMPLETIONS": "5"})
    assert given.shard == Shard(0, 2)  # --shard wins
    with pytest.raises(ValueError, match="JOB_COMPLETIONS"):
        check_worker_args(_args(), {"JOB_COMPLETION_INDEX": "2"})
    with pytest.raises(ValueError, match="0 <= I < N"):
        check_worker_args(_args(), {"JOB_COMPLETION_INDEX": "5", "JOB_COMPLETIONS": "5"})


def test_redis_url_from_the_option_or_the_environment() -> None:
    args = _args()
    check_worker_args(args, {"PARADIGM_REDIS_URL": "redis://h:1/0"})
    assert args.shared.url == "redis://h:1/0"
    assert args.shared.name == "q"
    with pytest.raises(ValueError, match="--redis"):
        check_worker_args(_args(redis="http://h"), {})


def test_bad_shard_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["batch", "in.jsonl", "-o", "out.jsonl", "--shard", "3/3"])
    assert exit_info.value.code == 2
    assert "0 <= I < N" in capsys.readouterr().err


# ---------------------------------------------------------------- merge


def _input(path: Path, n: int) -> list[str]:
    ids = [f"req-{i}" for i in range(n)]
    with path.open("w") as f:
        for i in ids:
            f.write(json.dumps({"custom_id": i, "messages": [{"role": "user", "content": i}]}))
            f.write("\n")
    return ids


def _record(custom_id: str, ok: bool = True) -> str:
    error = None if ok else {"message": "boom", "code": "server_error"}
    return json.dumps({"custom_id": custom_id, "response": None, "error": error}) + "\n"


def _merge_main(tmp: Path, *outputs: str) -> int:
    paths = [str(tmp / name) for name in outputs]
    return main(["merge", *paths, "-o", str(tmp / "all.jsonl"), "--input", str(tmp / "in.jsonl")])


def test_merge_joins_shards_in_input_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _input(tmp_path / "in.jsonl", 10)
    (tmp_path / "out.0").write_text("".join(_record(i) for i in ids[::2][::-1]))
    (tmp_path / "out.1").write_text("".join(_record(i, i != "req-3") for i in ids[1::2]))
    code = _merge_main(tmp_path, "out.0", "out.1")
    assert code == 0
    merged = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [r["custom_id"] for r in merged] == ids
    assert "1 failed" in capsys.readouterr().err


def test_merge_reports_missing_duplicated_and_unexpected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _input(tmp_path / "in.jsonl", 6)
    (tmp_path / "a").write_text(_record("req-0", ok=False) + _record("req-1") + _record("zzz"))
    (tmp_path / "b").write_text(_record("req-0") + _record("req-2") + '{"custom_id": "req-')
    code = _merge_main(tmp_path, "a", "b")
    assert code == 1
    err = capsys.readouterr().err
    assert "Missing: 3 input line(s)" in err
    assert "'req-3', 'req-4', 'req-5'" in err
    assert "Duplicated: 1 custom_id(s)" in err
    assert "Unexpected: 1 record(s)" in err
    assert "Unreadable lines" in err
    merged = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [r["custom_id"] for r in merged] == ids[:3]
    assert merged[0]["error"] is None  # the success kept over the failure


def test_merge_refuses_to_overwrite_what_it_reads(tmp_path: Path) -> None:
    _input(tmp_path / "in.jsonl", 1)
    (tmp_path / "a").write_text(_record("req-0"))
    code = main(["merge", str(tmp_path / "a"), "-o", str(tmp_path / "a"),
                 "--input", str(tmp_path / "in.jsonl")])  # fmt: skip
    assert code == 2
    assert (tmp_path / "a").read_text() == _record("req-0")


# ---------------------------------------------------------------- processes


def _worker(i: int, src: Path, tmp: Path, url: str, redis: str | None) -> subprocess.Popen[str]:
    env = {**os.environ, "PARADIGM_BASE_URL": url, "PARADIGM_API_KEY": "sk-workers-test"}
    argv = [*CLI, "batch", str(src), "-o", str(tmp / f"out.{i}.jsonl"), "--shard", f"{i}/3",
            "--rpm", str(QUOTA), "--concurrency", "16", "-q"]  # fmt: skip
    if redis:
        argv += ["--redis", redis, "--redis-name", "workers"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


@contextmanager
def _running(procs: list[subprocess.Popen[str]]) -> Iterator[list[subprocess.Popen[str]]]:
    """The worker processes of a test (it may replace some); whatever happens in the test,
    each is killed if still running, waited for, and its stderr pipe closed on exit."""
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()


def _merge(tmp: Path, src: Path) -> subprocess.CompletedProcess[str]:
    outs = sorted(str(p) for p in tmp.glob("out.*.jsonl"))
    argv = [*CLI, "merge", *outs, "-o", str(tmp / "all.jsonl"), "--input", str(src)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _wait(procs: list[subprocess.Popen[str]], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            codes.append(proc.wait())
    return codes


@pytest.mark.slow
def test_three_workers_with_the_full_quota_each_share_it(
    tmp_path: Path, quota_mock: str, redis_server: RedisServer
) -> None:
    n = 240  # 24 s at the quota, from an empty bucket
    src = tmp_path / "in.jsonl"
    ids = _input(src, n)
    workers = [_worker(i, src, tmp_path, quota_mock, redis_server.url) for i in range(3)]
    with _running(workers) as procs:
        codes = _wait(procs, 90)
        assert codes == [0, 0, 0], [p.stderr.read() if p.stderr else "" for p in procs]
    stats = _stats(quota_mock)
    assert stats.get("quota", 0) <= 0.01 * n, stats  # 429s at most 1 %
    assert stats["ok"] == n  # nothing sent twice
    # The quota is used in full while the workers send: the rate from the first request
    # to the last, as the mock saw them (the processes' start-up, slow on a busy machine,
    # is no part of it).  One worker's shard done early leaves the quota to the others.
    arrivals = mock_arrivals(quota_mock)
    goodput = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) * 60
    assert 0.9 * QUOTA <= goodput <= 1.01 * QUOTA, goodput
    merged = _merge(tmp_path, src)
    assert merged.returncode == 0, merged.stderr
    records = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [r["custom_id"] for r in records] == ids


@pytest.mark.slow
def test_a_killed_worker_resumes_and_redis_stopped_for_10s_loses_nothing(
    tmp_path: Path, quota_mock: str, redis_server: RedisServer
) -> None:
    n = 150
    src = tmp_path / "in.jsonl"
    ids = _input(src, n)
    workers = [_worker(i, src, tmp_path, quota_mock, redis_server.url) for i in range(3)]
    with _running(workers) as procs:
        time.sleep(5)
        procs[0].send_signal(signal.SIGKILL)  # kill -9 mid-run
        procs[0].wait()
        assert procs[0].stderr is not None
        procs[0].stderr.close()
        procs[0] = _worker(0, src, tmp_path, quota_mock, redis_server.url)  # the same command
        time.sleep(2)
        before = _stats(quota_mock)
        redis_server.stop()
        time.sleep(10)
        during = _stats(quota_mock)
        redis_server.start()
        codes = _wait(procs, 120)
        assert codes == [0, 0, 0], [p.stderr.read() if p.stderr else "" for p in procs]
    stats = _stats(quota_mock)
    assert stats.get("quota", 0) <= 0.01 * n, stats
    # Requests already let through may still arrive at first; then nothing is sent.
    assert sum(during.values()) - sum(before.values()) <= 3 * 16
    merged = _merge(tmp_path, src)
    assert merged.returncode == 0, merged.stderr  # nothing missing, nothing duplicated
    records = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [r["custom_id"] for r in records] == ids
    assert all(r["error"] is None for r in records)


def test_quota_status_prints_the_quota_as_json(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PARADIGM_REDIS_URL", raising=False)
    assert main(["quota-status", "--redis", redis_server.url, "--redis-name", "q"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["name"] == "q"
    assert state["exists"] is False
    assert state["workers"] == []
    assert main(["quota-status"]) == 2
    assert "PARADIGM_REDIS_URL" in capsys.readouterr().err
