"""One bad item never kills a batch: arbitrary JSON values and strings, lone surrogates
included, through ``chat_batch`` and through the CLI.

12. ``chat_batch`` (plain and streamed), given any mix of items (valid requests; arbitrary
    JSON values; message lists with arbitrary roles and contents; requests spoiled after
    they were built with lone surrogates, ``NaN``, infinities, objects JSON cannot hold,
    circular lists), returns without raising one result per item, at the item's index and
    with its ``custom_id``; a valid item succeeds, an item holding anything UTF-8 JSON
    cannot carry fails with :class:`InvalidRequestError` and sends nothing, and no body a
    strict server would refuse is ever sent.
13. ``paradigm-trio batch --mock`` (its in-process entry point, few examples), given a JSONL
    file of such values, exits 0 or 1 and writes exactly one record per line, each id once,
    valid UTF-8; a line holding a lone surrogate is an ``invalid_request`` record; a rerun
    skips every line, and ``--retry-failed`` reruns the failures and still leaves one
    record per line (the ids with lone surrogates are recognised again).
14. The same with hostile lines (nesting of any depth in any field, ``NaN``/``Infinity``
    tokens, lone surrogates in ids and contents), through ``--shard I/N`` (every line in
    exactly one shard), ``--report run.html`` and ``report``: one record per line, each a
    success or an ``invalid_request``, and reports that read every record.
"""

from __future__ import annotations

import errno
import json
import math
import tempfile
from pathlib import Path
from typing import IO, Any
from unittest.mock import patch

import httpx2
import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st

import paradigm_trio as pt
from paradigm_trio.cli import _run_batch
from paradigm_trio.cli import main as cli_main

from .strategies import examples

SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff", "\ud83d"]

texts = st.text(st.one_of(st.characters(), st.sampled_from(SURROGATES)), max_size=6)
clean_texts = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=6)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


def _circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


not_json = st.sampled_from([object(), b"bytes", {1, 2}, complex(1, 2)]) | st.builds(_circular)
roles = st.sampled_from(["user", "system", "assistant"]) | json_values
messages = st.lists(
    st.fixed_dictionaries({"role": roles, "content": texts | json_values}), max_size=3
)


def unsendable(value: object, inside: frozenset[int] = frozenset()) -> bool:
    """Whether ``value`` holds anything UTF-8 JSON cannot carry (an independent check)."""
    if isinstance(value, str):
        return any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)
    if isinstance(value, float):
        return not math.isfinite(value)
    if value is None or isinstance(value, int):
        return False
    if isinstance(value, dict | list | tuple):
        if id(value) in inside:
            return True
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        within = inside | {id(value)}
        return any(unsendable(k, within) or unsendable(v, within) for k, v in pairs)
    return True


@st.composite
def good_requests(draw: st.DrawFn, index: int) -> pt.ChatRequest:
    return pt.ChatRequest(
        messages=[{"role": "user", "content": draw(clean_texts)}], custom_id=f"good-{index}"
    )


@st.composite
def spoiled_requests(draw: st.DrawFn, index: int) -> pt.ChatRequest:
    """A valid request, then a message field or an ``extra`` field set to anything."""
    request = draw(good_requests(index))
    value = draw(json_values | not_json)
    target = request.messages[0] if draw(st.booleans()) else request.extra
    assert isinstance(target, dict)
    target[draw(st.sampled_from(["content", "name", "guided_json"]))] = value
    return request


@st.composite
def batch_items(draw: st.DrawFn) -> list[Any]:
    kinds = draw(st.lists(st.sampled_from(["good", "spoiled", "json", "messages"]), max_size=10))
    items: list[Any] = []
    for i, kind in enumerate(kinds):
        if kind == "good":
            items.append(draw(good_requests(i)))
        elif kind == "spoiled":
            items.append(draw(spoiled_requests(i)))
        elif kind == "json":
            items.append(draw(json_values))
        else:
            items.append(draw(messages))
    return items


class StrictServer:
    """Answers a completion (plain or streamed) to a body a strict server accepts."""

    def __init__(self) -> None:
        self.accepted = 0
        self.refused: list[bytes] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        try:
            body = json.loads(request.content.decode("utf-8"), parse_constant=_no_constant)
            json.dumps(body, ensure_ascii=False).encode("utf-8")  # no lone surrogate escape
        except ValueError:
            self.refused.append(request.content)
            return httpx2.Response(400, json={"error": {"message": "bad body", "code": None}})
        self.accepted += 1
        if not body.get("stream"):
            return httpx2.Response(
                200,
                json={"choices": [{"message": {"role": "assistant", "content": "ok"},
                                   "finish_reason": "stop"}]},
            )  # fmt: skip
        event = {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}
        data = b"data: " + json.dumps(event).encode() + b"\n\ndata: [DONE]\n\n"
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=data)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@settings(max_examples=examples(2.0))
@given(items=batch_items(), stream=st.booleans())
def test_any_items_get_one_result_each_and_nothing_invalid_is_sent(
    items: list[Any], stream: bool
) -> None:
    server = StrictServer()

    async def run() -> pt.BatchResults:
        transport = httpx2.MockTransport(server)
        async with pt.Client(
            api_key="sk-property-key-123", base_url="http://test/api/v2", transport=transport
        ) as client:
            return await client.chat_batch(items, stream=stream, retry=pt.RetryPolicy(attempts=1))

    results = trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [r.index for r in results] == list(range(len(items)))
    for item, result in zip(items, results, strict=True):
        assert result.ok != (result.error is not None)
        if isinstance(item, pt.ChatRequest):
            assert result.custom_id == item.custom_id
            if str(item.custom_id).startswith("good") and not unsendable(
                [item.messages, item.extra]
            ):
                assert result.ok, result
        if unsendable(item if not isinstance(item, pt.ChatRequest) else [item.messages,
                                                                          item.extra]):  # fmt: skip
            assert isinstance(result.error, pt.InvalidRequestError), result
        if not result.ok:
            assert isinstance(result.error, pt.InvalidRequestError), result
            assert result.attempts == 0
    assert server.refused == []
    assert server.accepted == sum(r.ok for r in results)


# --------------------------------------------------------------------------- the CLI


@st.composite
def input_lines(draw: st.DrawFn) -> list[Any]:
    """The JSON values of an input file's lines: requests (some with arbitrary ids, fields
    and contents) and arbitrary values."""
    lines: list[Any] = []
    for i in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["request", "odd request", "json"]))
        if kind == "json":
            lines.append(draw(json_values))
            continue
        line: dict[str, Any] = {"custom_id": f"r{i}", "messages": [
            {"role": "user", "content": draw(clean_texts)}
        ]}  # fmt: skip
        if kind == "odd request":
            line["custom_id"] = draw(st.sampled_from([f"r{i}\ud800", f"r{i}", "dup"]) | texts)
            line["messages"] = draw(messages)
            line.update(draw(st.dictionaries(st.sampled_from(["seed", "user", "x"]), json_values)))
        lines.append(line)
    return lines


def run_cli(*args: str) -> int:
    with patch.object(_run_batch, "MOCK_LATENCY", "fixed:0"):
        return cli_main(["batch", *args, "--mock", "--quiet", "--max-attempts", "1"])


def read_records(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    raw.decode("utf-8")  # valid UTF-8 throughout
    return [json.loads(line) for line in raw.splitlines()]


THE_ISSUE = [  # issue 13: this file once crashed the run, 0 records written
    {"custom_id": "s1\ud800", "messages": [{"role": "user", "content": "hi"}]},
    {"custom_id": "s2", "messages": [{"role": "user", "content": "hi \udc00"}]},
    {"custom_id": "s3", "messages": [{"role": "user", "content": "ok"}]},
]


@settings(max_examples=examples(0.3))
@given(lines=input_lines())
@example(lines=THE_ISSUE)
def test_the_cli_writes_one_record_per_line_whatever_the_lines_hold(lines: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.jsonl"
        out = Path(folder) / "out.jsonl"
        path.write_text("".join(json.dumps(value) + "\n" for value in lines))
        if lines and not isinstance(lines[0], dict):
            # Not a JSONL file of requests at all: refused once, before anything is sent.
            assert run_cli(str(path), "-o", str(out)) == 2
            assert not out.exists()
            return
        assert run_cli(str(path), "-o", str(out)) in (0, 1)
        records = read_records(out)
        ids = [r["custom_id"] for r in records]
        assert len(ids) == len(lines)
        assert len(set(ids)) == len(ids)
        by_id = {r["custom_id"]: r for r in records}
        seen: set[object] = set()
        for value in lines:
            custom_id = value.get("custom_id") if isinstance(value, dict) else None
            first = isinstance(custom_id, str) and custom_id and custom_id not in seen
            seen.add(custom_id if isinstance(custom_id, str) else None)
            if first and not str(custom_id).startswith("line-") and unsendable(value):
                assert by_id[custom_id]["error"]["code"] == "invalid_request"

        written = out.read_bytes()
        assert run_cli(str(path), "-o", str(out)) in (0, 1)  # a rerun: nothing to do
        assert out.read_bytes() == written
        assert run_cli(str(path), "-o", str(out), "--retry-failed") in (0, 1)
        again = read_records(out)
        assert sorted(r["custom_id"] for r in again) == sorted(ids)
        succeeded = [line for line in written.splitlines() if b'"error":null' in line]
        assert out.read_bytes().splitlines()[: len(succeeded)] == succeeded


def test_a_broken_output_stops_the_run_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Only a broken output stops a run (with everything written so far kept): exit 2 and
    one line, not a traceback."""
    written = 0
    real = _run_batch.write_line

    def disk_full_after_one(out: IO[bytes], line: bytes) -> None:
        nonlocal written
        if written == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        written += 1
        real(out, line)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.jsonl"
        out = Path(folder) / "out.jsonl"
        more = [{"custom_id": f"s{i}", "messages": [{"role": "user", "content": "ok"}]}
                for i in (4, 5)]  # fmt: skip
        path.write_text("".join(json.dumps(value) + "\n" for value in THE_ISSUE + more))
        with patch.object(_run_batch, "write_line", disk_full_after_one):
            assert run_cli(str(path), "-o", str(out), "--concurrency", "1") == 2
        assert len(read_records(out)) == 3  # the two invalid lines and the first result
    err = capsys.readouterr().err
    assert "paradigm-trio batch: I/O error: [Errno 28] No space left on device" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- hostile lines


class Raw(str):
    """An input line written as it is (not through ``json.dumps``)."""


@st.composite
def hostile_lines(draw: st.DrawFn) -> list[str]:
    """Lines a user (or a tool) may write: nesting of any depth in any field, ``NaN`` and
    ``Infinity`` tokens, lone surrogates (escaped) in ids and contents."""
    lines = [Raw('{"custom_id": "first", "messages": [{"role": "user", "content": "hi"}]}')]
    for i in range(draw(st.integers(1, 5))):
        depth = draw(st.integers(1, 3000))
        deep = "[" * depth + "]" * depth
        token = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "0.5"]))
        custom_id = json.dumps(draw(st.sampled_from([f"h{i}", f"h{i}\ud800", f"h{i}\udfff"])))
        content = json.dumps(draw(texts))
        lines.append(Raw(draw(st.sampled_from([
            deep,
            f'{{"custom_id": {custom_id}, "messages": {deep}}}',
            f'{{"custom_id": {custom_id}, "messages": [{{"role": "user", "content": {content}}}],'
            f' "temperature": {token}}}',
            f'{{"custom_id": {custom_id}, "input": {content}, "x": {deep}}}',
        ]))))  # fmt: skip
    return lines


@settings(max_examples=examples(0.12))
@given(lines=hostile_lines(), shards=st.integers(1, 2))
def test_hostile_lines_get_one_record_each_through_shards_and_reports(
    lines: list[str], shards: int
) -> None:
    from paradigm_trio.cli._report import write_html

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.jsonl"
        path.write_text("".join(line + "\n" for line in lines))
        ids: list[str] = []
        for index in range(shards):
            out = Path(folder) / f"out{index}.jsonl"
            shard = ["--shard", f"{index}/{shards}"] if shards > 1 else []
            report = ["--report", str(Path(folder) / f"run{index}.html")]
            assert run_cli(str(path), "-o", str(out), *shard, *report) in (0, 1)
            records = read_records(out)
            for record in records:
                assert record["error"] is None or record["error"]["code"] == "invalid_request"
            ids += [r["custom_id"] for r in records]
            data = write_html(out, Path(folder) / f"report{index}.html")  # `report`
            assert data.unreadable == []
            assert data.records == len(records)
        assert len(ids) == len(lines) == len(set(ids))
