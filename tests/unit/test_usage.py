"""Unknown token usage in batches and in the CLI's summary: ``None``, never zeros.

A server that reports no ``usage`` (or ignores ``stream_options.include_usage``) leaves
the usage of the completion unknown: ``BatchResult.usage`` is ``None``, the token sums
count only known usage and ``unknown_usage`` says how many were left out.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr
from pathlib import Path

import httpx2
import pytest

import paradigm_trio as pt
from paradigm_trio.cli._run_batch import _print_summary, _summary

from .helpers import completion_json, make_client

pytestmark = pytest.mark.anyio


def answer(request: httpx2.Request) -> httpx2.Response:
    """Items whose text ends in an even number get usage; the others get none."""
    text = json.loads(request.content)["messages"][-1]["content"]
    body = completion_json(text, prompt_tokens=3, completion_tokens=5)
    if int(text.split()[-1]) % 2:
        del body["usage"]
    return httpx2.Response(200, json=body)


def items(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"item {i}"}] for i in range(n)]


async def batch_statistics(n: int) -> tuple[pt.BatchResults, pt.ClientStatistics]:
    async with make_client(answer) as client:
        results = await client.chat_batch(items(n))
        return results, client.statistics()


async def test_batch_results_and_statistics_count_only_known_usage() -> None:
    results, client_stats = await batch_statistics(6)
    assert [r.usage for r in results] == [pt.Usage(3, 5, 8), None] * 3
    assert all(r.ok for r in results)
    stats = results.statistics
    assert (stats.succeeded, stats.unknown_usage) == (6, 3)
    assert (stats.prompt_tokens, stats.completion_tokens, stats.total_tokens) == (9, 15, 24)
    assert client_stats.unknown_usage == 3
    assert client_stats.total_tokens == 24


async def test_progress_reports_unknown_usage_as_it_goes() -> None:
    seen: list[int] = []
    async with make_client(answer) as client:
        await client.chat_batch(items(4), on_progress=lambda s: seen.append(s.unknown_usage))
    assert seen[-1] == 2
    assert seen == sorted(seen)


async def test_the_cli_summary_and_report_say_how_many_had_no_usage(tmp_path: Path) -> None:
    results, _ = await batch_statistics(4)
    summary = _summary(results.statistics, skipped=0, invalid=0, failures_total=0)
    summary["invalid_in_output"] = 0
    assert summary["tokens"] == {"prompt": 6, "completion": 10, "total": 16, "unknown_usage": 2}
    json.dumps(summary)  # the --report JSON
    err = io.StringIO()
    with redirect_stderr(err):
        _print_summary(summary, tmp_path / "out.jsonl", interrupted=False)
    assert "Tokens: 16 (6 prompt, 10 completion; 2 success(es) without usage, not counted)" in (
        err.getvalue()
    )


async def test_the_cli_summary_is_unchanged_when_every_usage_is_known(tmp_path: Path) -> None:
    results, _ = await batch_statistics(1)  # item 0 only: known usage
    summary = _summary(results.statistics, skipped=0, invalid=0, failures_total=0)
    summary["invalid_in_output"] = 0
    assert summary["tokens"]["unknown_usage"] == 0
    err = io.StringIO()
    with redirect_stderr(err):
        _print_summary(summary, tmp_path / "out.jsonl", interrupted=False)
    assert "Tokens: 8 (3 prompt, 5 completion); " in err.getvalue()
