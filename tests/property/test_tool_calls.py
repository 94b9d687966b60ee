"""Streamed tool calls: any split of a valid tool-call stream assembles to the same calls.

14. Given any calls (ids, names, arguments: any JSON text, non-ASCII included), sent as a
    stream whose argument fragments are cut anywhere, whose calls' deltas are interleaved
    in any order that keeps each call's own order, grouped into chunks any way, and whose
    bytes are cut into network pieces anywhere, ``Client.chat_stream`` hands out a
    completion whose ``tool_calls`` are exactly those calls, in index order, and a
    streamed batch item gets the same; the assembler alone gives the same calls.

15. Given any calls of tools offered or not, with arguments valid, JSON breaking the
    tool's parameters, or not JSON, ``chat``, ``chat_stream`` and batch items (plain and
    streamed) hand out the answer only when every call is valid (judged by an oracle of
    its own, with ``jsonschema``), else raise ``ToolCallError`` naming the first invalid
    call and the reason; ``validate_tool_calls=False`` hands out any call as it came.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx2
import trio
import trio.testing
from hypothesis import event, given
from hypothesis import strategies as st

import paradigm_trio as pt
from paradigm_trio._endpoints._tools import ToolCallAssembler

names = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
json_texts = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
).map(lambda value: json.dumps(value, ensure_ascii=False))


@st.composite
def tool_call_streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """``(calls, chunks)``: the calls, and the tool-call deltas of each chunk."""
    count = draw(st.integers(1, 4))
    calls = [
        {"id": f"call_{i}_{draw(names)}", "type": "function",
         "function": {"name": draw(names), "arguments": draw(json_texts)}}
        for i in range(count)
    ]  # fmt: skip
    per_call: list[list[dict[str, Any]]] = []
    for index, call in enumerate(calls):
        arguments = call["function"]["arguments"]
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(arguments) - 1)), max_size=5)))
        bounds = [0, *[c for c in cuts if c < len(arguments)], len(arguments)]
        pieces = [arguments[a:b] for a, b in itertools.pairwise(bounds)]
        first_takes = draw(st.integers(0, min(1, len(pieces))))  # name alone, or with a piece
        deltas = [
            {"index": index, "id": call["id"], "type": "function",
             "function": {"name": call["function"]["name"],
                          "arguments": "".join(pieces[:first_takes])}}
        ]  # fmt: skip
        deltas += [{"index": index, "function": {"arguments": p}} for p in pieces[first_takes:]]
        per_call.append(deltas)
    # Interleave the calls' deltas in any order that keeps each call's own order.
    order = draw(st.permutations([i for i, deltas in enumerate(per_call) for _ in deltas]))
    positions = [0] * count
    merged = []
    for i in order:
        merged.append(per_call[i][positions[i]])
        positions[i] += 1
    # Group them into chunks of one or more deltas.
    chunks: list[list[dict[str, Any]]] = []
    while merged:
        size = draw(st.integers(1, len(merged)))
        chunks.append(merged[:size])
        merged = merged[size:]
    return calls, chunks


def sse_bytes(chunks: list[list[dict[str, Any]]]) -> bytes:
    def event(choice: dict[str, Any]) -> bytes:
        body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [choice]}  # fmt: skip
        return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"

    events = [event({"index": 0, "delta": {"role": "assistant"}, "finish_reason": None})]
    events += [
        event({"index": 0, "delta": {"tool_calls": deltas}, "finish_reason": None})
        for deltas in chunks
    ]
    events.append(event({"index": 0, "delta": {}, "finish_reason": "tool_calls"}))
    return b"".join(events) + b"data: [DONE]\n\n"


@given(stream=tool_call_streams())
def test_the_assembler_joins_any_split_into_the_same_calls(stream: Any) -> None:
    calls, chunks = stream
    assembler = ToolCallAssembler()
    for deltas in chunks:
        assembler.add(deltas)
    assert assembler.calls() == calls


@given(stream=tool_call_streams(), cuts=st.sets(st.integers(1, 5000), max_size=12))
def test_any_split_of_the_stream_gives_the_same_calls(stream: Any, cuts: set[int]) -> None:
    calls, chunks = stream
    data = sse_bytes(chunks)
    bounds = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]

    async def body() -> Any:
        for piece in pieces:
            yield piece

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    async def run() -> tuple[pt.ChatCompletion, pt.BatchResult]:
        client = pt.Client(
            api_key="sk-property-1234",
            base_url="http://test/api/v2",
            transport=httpx2.MockTransport(handler),
        )
        async with client:
            async with client.chat_stream([{"role": "user", "content": "x"}]) as stream:
                async for _ in stream:
                    pass
            [result] = await client.chat_batch([[{"role": "user", "content": "x"}]], stream=True)
        return stream.completion, result

    completion, result = trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    want = [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls]
    for answer in (completion, result.completion):
        assert answer is not None
        got = [(c.id, c.function.name, c.function.arguments) for c in answer.tool_calls]
        assert got == want
        assert answer.finish_reason == "tool_calls"


# --------------------------------------------------------------------------- checked calls

PARAMETERS = {
    "type": "object",
    "properties": {"q": {"type": "string"}, "n": {"type": "integer", "minimum": 0}},
    "required": ["q"],
}
OFFERED = [pt.function_tool("search", PARAMETERS), pt.function_tool("ping")]
arguments_texts = st.one_of(
    json_texts,  # any JSON: valid for "ping", rarely for "search"
    st.fixed_dictionaries(
        {"q": st.text(max_size=5)}, optional={"n": st.integers(-3, 3) | st.text(max_size=2)}
    ).map(json.dumps),
    st.text(max_size=12),  # mostly not JSON
    json_texts.map(lambda text: text[:-1]),  # JSON cut short
)
called = st.tuples(st.sampled_from(["search", "ping", "search", "ping", "Search"]), arguments_texts)


def oracle(name: str, arguments: str) -> str | None:
    """The reason a call is invalid, judged independently of the client (``None``: valid)."""
    import jsonschema  # type: ignore[import-untyped]

    if name not in ("search", "ping"):
        return "unknown_tool"
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return "not_json"
    if name == "search" and not jsonschema.Draft202012Validator(PARAMETERS).is_valid(value):
        return "invalid_arguments"
    return None


@given(calls=st.lists(called, min_size=1, max_size=2), cuts=st.integers(1, 7))
def test_a_call_is_handed_out_only_when_valid_plain_streamed_and_batched(
    calls: list[tuple[str, str]], cuts: int
) -> None:
    want = next((r for r in (oracle(*c) for c in calls) if r is not None), None)
    event(f"invalid: {want}")
    whole = [
        {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
        for i, (n, a) in enumerate(calls)
    ]
    chunks: list[list[dict[str, Any]]] = []
    for i, c in enumerate(whole):
        name, arguments = c["function"]["name"], c["function"]["arguments"]
        chunks.append([{"index": i, "id": c["id"], "type": "function",
                        "function": {"name": name, "arguments": ""}}])  # fmt: skip
        chunks += [
            [{"index": i, "function": {"arguments": arguments[k : k + cuts]}}]
            for k in range(0, len(arguments), cuts)
        ]
    plain = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
             "choices": [{"index": 0, "finish_reason": "tool_calls",
                          "message": {"role": "assistant", "content": None,
                                      "tool_calls": whole}}]}  # fmt: skip

    def handler(request: httpx2.Request) -> httpx2.Response:
        if json.loads(request.content).get("stream"):
            return httpx2.Response(
                200, headers={"content-type": "text/event-stream"}, content=sse_bytes(chunks)
            )
        return httpx2.Response(200, json=plain)

    async def run() -> list[object]:
        client = pt.Client(
            api_key="sk-property-1234",
            base_url="http://test/api/v2",
            transport=httpx2.MockTransport(handler),
            retry=pt.RetryPolicy.no_retries(),
        )
        outcomes: list[object] = []
        messages = [{"role": "user", "content": "x"}]
        async with client:
            try:
                outcomes.append(await client.chat(messages, tools=OFFERED))
            except pt.ToolCallError as error:
                outcomes.append(error)
            try:
                async with client.chat_stream(messages, tools=OFFERED) as stream:
                    async for _ in stream:
                        pass
                outcomes.append(stream.completion)
            except pt.ToolCallError as error:
                outcomes.append(error)
            request = pt.ChatRequest(messages=messages, tools=OFFERED)
            for streamed in (False, True):
                [result] = await client.chat_batch([request], stream=streamed)
                outcomes.append(result.completion if result.ok else result.error)
            raw = await client.chat(messages, tools=OFFERED, validate_tool_calls=False)
        outcomes.append(raw)
        return outcomes

    *checked, raw = trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    for outcome in checked:
        if want is None:
            assert isinstance(outcome, pt.ChatCompletion)
            assert [c.function.arguments for c in outcome.tool_calls] == [a for _, a in calls]
        else:
            assert isinstance(outcome, pt.ToolCallError), outcome
            assert outcome.reason == want
            first_bad = next(c for c in calls if oracle(*c) is not None)
            assert (outcome.tool, outcome.call.function.arguments) == first_bad
    assert isinstance(raw, pt.ChatCompletion)  # the opt-out hands out any call
    assert [(c.function.name, c.function.arguments) for c in raw.tool_calls] == calls
