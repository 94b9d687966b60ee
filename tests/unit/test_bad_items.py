"""One bad item never kills a batch (issue 13, item 2).

Anything wrong with one item (invalid Unicode anywhere in it, a body that cannot be encoded
as JSON, an exception while preparing it) becomes that item's :class:`InvalidRequestError`
result, nothing of it is sent, and every other item runs.  ``chat`` and ``chat_stream``
refuse such a request with the same error before sending.  The CLI's record writer and its
resume cope with a ``custom_id`` holding a lone surrogate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

import paradigm_trio as pt
from paradigm_trio.cli._batchfile import (
    read_done,
    read_input,
    result_line,
    result_record,
    write_record,
)

from .helpers import completion_json, make_client

pytestmark = pytest.mark.anyio

OK_MESSAGES = [{"role": "user", "content": "fine"}]


def strict_json(content: bytes) -> Any:
    """Parse as a strict server would: UTF-8, no NaN/Infinity, no lone surrogate escapes."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    text = content.decode("utf-8")
    value = json.loads(text, parse_constant=refuse)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # a lone surrogate escape fails
    return value


class Server:
    """Answers every request (plain or streamed) with a completion; records the bodies and
    any body a strict server would have refused."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.refused: list[bytes] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        try:
            body = strict_json(request.content)
        except ValueError:
            self.refused.append(request.content)
            return httpx2.Response(400, json={"error": {"message": "bad body", "code": None}})
        self.bodies.append(body)
        if not body.get("stream"):
            return httpx2.Response(200, json=completion_json("echo"))
        events = [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "echo"}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ]
        data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=data + b"data: [DONE]\n\n"
        )


def request(content: Any = "fine", **fields: Any) -> pt.ChatRequest:
    return pt.ChatRequest(messages=[{"role": "user", "content": content}], **fields)


def spoiled(**change: Any) -> pt.ChatRequest:
    """A request valid when built, made invalid afterwards (its message dict is mutable)."""
    req = request()
    message = req.messages[0]
    assert isinstance(message, dict)
    message.update(change)
    return req


# --------------------------------------------------------------------------- building


@pytest.mark.parametrize(
    ("fields", "where", "words"),
    [
        ({"custom_id": "s1\ud800"}, "custom_id", "lone surrogate '\\ud800' at position 2"),
        ({"messages": [{"role": "user", "content": "a\udcff"}]}, "messages[0].content",
         "lone surrogate '\\udcff' at position 1"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "\ud83d"}]}]},
         "messages[0].content[0].text", "lone surrogate"),
        ({"extra": {"tools": [{"name": object()}]}, "validate_tool_calls": False},
         "extra.tools[0].name", "type object cannot be sent as JSON"),
        ({"extra": {"logit_bias": {"1": math.nan}}}, 'extra.logit_bias["1"]', "NaN"),
        ({"extra": {"x": -math.inf}}, "extra.x", "-inf"),
        ({"extra": {"x": {("a", "b"): 1}}}, "extra.x", "a tuple key"),
        ({"extra": {"k\ud800": 1}}, "extra", "key 'k\\ud800' holds a lone surrogate"),
        ({"stop": ["ok", "\udfff"]}, "stop[1]", "lone surrogate"),
        ({"model": "m\ud800"}, "model", "lone surrogate"),
    ],
)  # fmt: skip
def test_a_request_that_cannot_be_sent_is_refused_naming_where(
    fields: dict[str, Any], where: str, words: str
) -> None:
    fields.setdefault("messages", OK_MESSAGES)
    with pytest.raises(pt.InvalidRequestError) as caught:
        pt.ChatRequest(**fields)
    error = caught.value
    assert isinstance(error, ValueError)  # what ChatRequest always raised
    assert error.where == where
    assert str(error).startswith(where + ": ")
    assert words in str(error)
    assert error.code == "invalid_request"
    str(error).encode("utf-8")  # the message itself is printable anywhere


def test_a_circular_extra_is_refused() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(pt.InvalidRequestError, match=r"extra\.loop\.self: .*circular"):
        request(extra={"loop": loop})


def test_shared_values_are_not_circular() -> None:
    shared = {"a": 1}
    req = request(extra={"x": shared, "y": [shared, shared]})
    assert req.extra["y"] == [shared, shared]


def test_a_value_refused_halfway_is_sent_once_mended() -> None:
    # (the JSON encoder is shared between requests: it keeps nothing from a failure, such
    # as the containers it was inside, which it would take for circular the next time)
    holder: list[Any] = [1, math.nan]
    with pytest.raises(pt.InvalidRequestError, match=r"extra\.h\[1\]: nan is not a JSON"):
        request(extra={"h": holder})
    holder[1] = 2
    req = request(extra={"h": holder, "y": [holder, holder]})
    assert json.loads(req.encoded("m")) == {
        "model": "m",
        "messages": [{"role": "user", "content": "fine"}],
        "h": [1, 2],
        "y": [[1, 2], [1, 2]],
    }


def test_an_unhashable_role_is_an_invalid_request_not_a_type_error() -> None:
    with pytest.raises(pt.InvalidRequestError, match=r"messages\[0\] has unknown role"):
        pt.ChatRequest(messages=[{"role": ["user"], "content": "x"}])


def test_every_validation_error_is_an_invalid_request_error() -> None:
    with pytest.raises(pt.InvalidRequestError, match="temperature"):
        request(temperature=5)
    with pytest.raises(pt.InvalidRequestError, match="messages must not be empty"):
        pt.ChatRequest(messages=[])


# --------------------------------------------------------------------------- chat


async def test_chat_refuses_a_bad_message_before_sending() -> None:
    server = Server()
    async with make_client(server) as client:
        with pytest.raises(pt.InvalidRequestError, match=r"messages\[0\]\.content: .*surrogate"):
            await client.chat([{"role": "user", "content": "x\ud800"}])
        with pytest.raises(pt.InvalidRequestError, match=r"messages\[0\]\.content"):
            await client.send(spoiled(content="late \udc80"))
        with pytest.raises(
            pt.InvalidRequestError, match=r"^messages\[0\]\.name: .*type bytes cannot be sent"
        ):
            await client.send(spoiled(name=b"raw"))
        with pytest.raises(pt.InvalidRequestError, match=r"messages\[0\]\.content"):
            client.chat_stream(spoiled(content="\ud800"))  # refused when made, not entered
        with pytest.raises(pt.InvalidRequestError, match=r"^extra\.x: nan"):
            await client.chat(OK_MESSAGES, extra={"x": math.nan})
        assert await client.chat(OK_MESSAGES)  # the client is fine afterwards
    assert len(server.bodies) == 1
    assert server.refused == []


async def test_a_valid_request_is_sent_as_utf8_json() -> None:
    server = Server()
    async with make_client(server) as client:
        await client.chat([{"role": "user", "content": "héllo 😀"}])
    assert server.bodies[0]["messages"][0]["content"] == "héllo 😀"


async def test_a_request_is_encoded_once_unless_its_caller_holds_it() -> None:
    """``chat()`` and a batch build their requests themselves: the body encoded when the
    request was checked is the one sent.  A request the caller built may have changed
    since (its message dicts are mutable): it is encoded again, as it is now."""
    from unittest.mock import patch

    from paradigm_trio._endpoints import _models

    encoded: list[object] = []
    real = _models._dumps

    def counting(value: object) -> bytes:
        if not isinstance(value, str):  # (a model's name is encoded on its own)
            encoded.append(value)
        return real(value)

    server = Server()
    with patch.object(_models, "_dumps", counting):
        async with make_client(server) as client:
            await client.chat([{"role": "user", "content": "once"}], max_tokens=5)
            assert len(encoded) == 1  # checked and sent: one encoding
            async with client.stream_batch([OK_MESSAGES, OK_MESSAGES]) as results:
                assert [r.ok async for r in results] == [True, True]
            assert len(encoded) == 3
            held = request("before")
            message = held.messages[0]
            assert isinstance(message, dict)
            message["content"] = "after"
            await client.send(held)
            assert len(encoded) == 5  # checked, then encoded again when sent
    assert [b["messages"][0]["content"] for b in server.bodies] == ["once", "fine", "fine", "after"]
    assert server.bodies[0] == {
        "model": "alfred-4.2", "messages": [{"role": "user", "content": "once"}],
        "max_tokens": 5,
    }  # fmt: skip


# --------------------------------------------------------------------------- batches


@pytest.mark.parametrize("stream", [False, True])
async def test_bad_items_become_their_results_and_the_rest_runs(stream: bool) -> None:
    loop: list[Any] = []
    loop.append(loop)
    items: list[Any] = [
        request(custom_id="good-0"),
        [{"role": "user", "content": "s\ud800"}],  # built by the batch
        spoiled(content="late \udfff"),  # fails when encoded for sending
        spoiled(name=object()),
        spoiled(content=[loop]),
        request(extra={"x": 1}, custom_id="good-5"),
        [{"role": ["user"], "content": "x"}],
        {"role": "user", "content": "a dict, not a list"},
        request(custom_id="good-8"),
    ]
    server = Server()
    async with make_client(server) as client:
        results = await client.chat_batch(items, stream=stream)
    assert [r.index for r in results] == list(range(len(items)))
    assert [r.ok for r in results] == [True, False, False, False, False, True, False, False, True]
    for r in results:
        if not r.ok:
            assert isinstance(r.error, pt.InvalidRequestError), r
            assert r.attempts == 0
    assert results[2].error is not None
    assert "messages[0].content" in str(results[2].error)
    assert results[3].error is not None
    assert "messages[0].name" in str(results[3].error)
    assert results[4].error is not None
    assert "circular" in str(results[4].error)
    assert [r.custom_id for r in results if r.ok] == ["good-0", "good-5", "good-8"]
    assert results.statistics.failed == 6
    assert results.statistics.succeeded == 3
    assert len(server.bodies) == 3
    assert server.refused == []


class Exploding(pt.ChatRequest):
    """A request whose preparation raises something unexpected (a bug, say)."""

    __slots__ = ()

    def estimated_tokens(self) -> int:
        raise RuntimeError("boom while preparing")


async def test_an_unexpected_exception_preparing_an_item_is_its_result() -> None:
    server = Server()
    async with make_client(server) as client:
        results = await client.chat_batch([Exploding(messages=OK_MESSAGES), OK_MESSAGES])
    assert [r.ok for r in results] == [False, True]
    assert isinstance(results[0].error, RuntimeError)
    assert "boom" in str(results[0].error)


class Hostile(Mapping[str, Any]):
    """A message whose lookups raise."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("no lookups today")

    def __iter__(self) -> Iterator[str]:
        return iter(["role"])

    def __len__(self) -> int:
        return 1


async def test_an_item_that_raises_while_being_read_is_its_result() -> None:
    server = Server()
    async with make_client(server) as client:
        results = await client.chat_batch([[Hostile()], OK_MESSAGES])
    assert [r.ok for r in results] == [False, True]
    assert isinstance(results[0].error, pt.InvalidRequestError)
    assert "RuntimeError: no lookups today" in str(results[0].error)


async def test_on_error_raise_stops_at_a_bad_item() -> None:
    server = Server()
    async with make_client(server) as client:
        with pytest.raises(pt.BatchError) as caught:
            await client.chat_batch([spoiled(content="\ud800")], on_error="raise")
    assert isinstance(caught.value.error, pt.InvalidRequestError)


async def test_an_input_that_raises_is_never_lost() -> None:
    """The input iterable itself breaking is not an item: it stops the batch, every time
    (it was once swallowed when the feeder's channel close raced the consumer)."""

    def broken() -> Iterator[Any]:
        yield OK_MESSAGES
        raise KeyError("the input broke")

    server = Server()
    async with make_client(server) as client:
        for _ in range(30):
            with pytest.raises(KeyError, match="the input broke"):
                await client.chat_batch(broken())
            await trio.sleep(0)


# --------------------------------------------------------------------------- the CLI's file


def test_a_record_with_a_lone_surrogate_id_is_written_and_read_back(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    error = pt.InvalidRequestError("custom_id: bad \udc00", where="custom_id")
    with out.open("ab") as f:
        write_record(f, result_record("s1\ud800", None, error, 0, 0.0))
        write_record(f, result_record("é😀", None, None, 1, 0.5))
    raw = out.read_bytes()
    raw.decode("utf-8")  # valid UTF-8
    lines = raw.splitlines()
    assert b"\\ud800" in lines[0]
    assert b"\\udc00" in lines[0]
    assert "é😀" in lines[1].decode()  # everything else is written as it is
    first = json.loads(lines[0])
    assert first["custom_id"] == "s1\ud800"
    assert first["error"]["code"] == "invalid_request"
    done, dropped = read_done(out, keep_failed=True)
    assert done == {"s1\ud800", "é😀"}
    assert dropped == 0
    done, dropped = read_done(out, keep_failed=False)  # --retry-failed
    assert done == {"é😀"}
    assert dropped == 1


def test_the_input_reader_refuses_a_bad_line_naming_where(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [
        r'{"custom_id": "s1\ud800", "messages": [{"role": "user", "content": "hi"}]}',
        r'{"custom_id": "s2", "messages": [{"role": "user", "content": "hi \udc00"}]}',
        r'{"custom_id": "s3", "messages": [{"role": "user", "content": "ok"}], "x": NaN}',
        r'{"custom_id": "s4", "messages": [{"role": {"a": 1}, "content": "ok"}]}',
        r'{"custom_id": "s5", "messages": [{"role": "user", "content": "ok"}]}',
    ]
    path.write_text("\n".join(lines) + "\n")
    items = list(read_input(path))
    assert [i.custom_id for i in items] == ["s1\ud800", "s2", "s3", "s4", "s5"]
    assert [i.request is None for i in items] == [True, True, True, True, False]
    assert items[0].problem is not None
    assert "custom_id: " in items[0].problem
    assert items[1].problem is not None
    assert "messages[0].content: " in items[1].problem
    assert items[2].problem is not None
    assert "extra.x: nan" in items[2].problem
    assert items[3].problem is not None
    assert "unknown role" in items[3].problem


def test_a_result_that_cannot_be_recorded_gets_an_error_record() -> None:
    completion = pt.ChatCompletion.from_json(completion_json())
    broken = pt.ChatCompletion(
        id="x", model="m", created=0, choices=completion.choices, usage=None,
        raw={"weird": object()},
    )  # fmt: skip
    record = json.loads(result_line("r\ud800", broken, None, 1, 0.25))
    assert record["custom_id"] == "r\ud800"
    assert record["error"]["code"] == "record_error"
    assert "could not be recorded (TypeError" in record["error"]["message"]
    assert record["attempts"] == 1
    good = json.loads(result_line("r2", completion, None, 1, 0.25))
    assert good["error"] is None
    assert good["response"]["body"]["id"] == "chatcmpl-123"
