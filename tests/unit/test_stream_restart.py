"""A live ``chat_stream`` that breaks after chunks were delivered is resumed (``restart=``):
the caller reads one stream, never a character twice, never a gap, and gets the completion
an unbroken stream gives.  Each restart is an attempt of the engine.  On trio's MockClock,
``httpx2.MockTransport`` (the pieces of a body: see ``test_streaming``)."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
import trio

import paradigm_trio as pt
from paradigm_trio._endpoints._assembly import CompletionAssembler
from paradigm_trio._endpoints._resume import Diverged, Resume

from .helpers import MESSAGES, Events, Script, fixed, make_client
from .test_stall import STALLS, paced
from .test_streaming import HANG, answer, chunk, collect, cut_error, sse

pytestmark = pytest.mark.anyio

WORDS = ("Hel", "lo ", "wör", "ld", "!")


def cut_after(n: int, *words: str) -> list[object]:
    """An answer's events cut (the connection breaks) after its role chunk and ``n`` words."""
    return [*answer(*words)[: 1 + n], cut_error()]


async def read(stream: Any) -> tuple[list[str], Any]:
    deltas: list[str] = []
    await collect(stream, deltas)
    return deltas, stream


async def test_a_cut_stream_is_replayed_and_read_on_as_one_stream() -> None:
    unbroken, _ = await read_unbroken(*WORDS)
    script = Script(sse(*cut_after(2, *WORDS))[0], sse(*answer(*WORDS))[0])
    events = Events()
    async with make_client(script, retry=fixed(), on_event=events) as client:
        deltas, stream = await read(client.chat_stream(MESSAGES))
        stats = client.statistics()
    assert deltas == ["", *WORDS, "", ""]  # each word once, in order
    assert stream.completion == unbroken
    assert [a.cause for a in stream.attempts] == ["connection", None]
    assert script.bodies()[0] == script.bodies()[1]  # "replay": the same request again
    assert [e.cause for e in events.of(pt.RetryScheduled)] == ["connection"]
    assert (stats.succeeded, stats.failed, stats.attempts, stats.retries) == (1, 0, 2, 1)
    assert stats.in_flight == 0


async def read_unbroken(*words: str) -> tuple[pt.ChatCompletion, list[str]]:
    async with make_client(Script(sse(*answer(*words))[0])) as client:
        deltas, stream = await read(client.chat_stream(MESSAGES))
    return stream.completion, deltas


async def test_a_replay_chunked_otherwise_is_cut_where_the_delivered_text_ends() -> None:
    # The same text in other pieces: the chunk that straddles the end is cut there.
    script = Script(sse(*cut_after(2, *WORDS))[0], sse(*answer("He", "llo w", "örld!"))[0])
    async with make_client(script, retry=fixed()) as client:
        deltas, stream = await read(client.chat_stream(MESSAGES))
    assert deltas == ["", "Hel", "lo ", "w", "örld!", "", ""]
    assert stream.completion.text == "Hello wörld!"


async def test_a_replay_that_differs_raises_the_error_that_broke_it_and_never_splices() -> None:
    script = Script(sse(*cut_after(2, *WORDS))[0], sse(*answer("Hel", "p ", "me"))[0])
    deltas: list[str] = []
    async with make_client(script, retry=fixed()) as client:
        with pytest.raises(pt.IncompleteStreamError, match="the connection broke") as info:
            await collect(client.chat_stream(MESSAGES), deltas)
        stats = client.statistics()
    assert deltas == ["", "Hel", "lo "]  # nothing of the other answer
    notes = " ".join(info.value.__notes__)
    assert "not resumed" in notes
    assert "content differs at character 3" in notes
    assert "temperature=0 or a seed" in notes
    assert [a.cause for a in info.value.attempts] == ["connection", "stream_diverged"]
    assert (stats.failed, stats.in_flight) == (1, 0)


async def test_a_replay_that_ends_short_of_what_was_delivered_raises() -> None:
    script = Script(sse(*cut_after(3, *WORDS))[0], sse(*answer("Hel"))[0])
    async with make_client(script, retry=fixed()) as client:
        with pytest.raises(pt.IncompleteStreamError) as info:
            await collect(client.chat_stream(MESSAGES))
    assert "ended (stop) before it reproduced" in " ".join(info.value.__notes__)


async def test_restarts_are_bounded_by_the_attempts_and_say_so() -> None:
    script = Script(*(sse(*cut_after(1, *WORDS))[0] for _ in range(3)))
    deltas: list[str] = []
    async with make_client(script, retry=fixed(attempts=3)) as client:
        with pytest.raises(pt.IncompleteStreamError) as info:
            await collect(client.chat_stream(MESSAGES), deltas)
    assert deltas == ["", "Hel"]
    assert script.calls == 3
    assert any("gave up after 3 attempt(s)" in n for n in info.value.__notes__)


async def test_restart_none_raises_the_break_as_before() -> None:
    script = Script(sse(*cut_after(2, *WORDS))[0])
    async with make_client(script) as client:
        with pytest.raises(pt.IncompleteStreamError) as info:
            await collect(client.chat_stream(MESSAGES, restart=None))
    assert any("already delivered chunks" in n for n in info.value.__notes__)
    with pytest.raises(ValueError, match="restart must be"):
        async with make_client(script) as client:
            client.chat_stream(MESSAGES, restart="resend")  # type: ignore[arg-type]


async def test_every_break_after_chunks_is_resumed_cut_malformed_error_event_silence() -> None:
    error_event = b"event: error\ndata: " + json.dumps({"error": {"code": 503}}).encode() + b"\n\n"
    head = answer(*WORDS)[:3]
    script = Script(
        sse(*head, b"data: {not json\n\n")[0],
        sse(*answer(*WORDS)[:4], error_event)[0],
        sse(*answer(*WORDS)[:5], HANG)[0],
        sse(*answer(*WORDS))[0],
    )
    timeouts = pt.Timeouts(read=5)
    async with make_client(script, retry=fixed(attempts=4), timeouts=timeouts) as client:
        deltas, stream = await read(client.chat_stream(MESSAGES))
    assert deltas == ["", *WORDS, "", ""]
    assert [a.cause for a in stream.attempts] == ["invalid_response", "503", "timeout", None]


async def test_a_stall_with_stall_detection_is_resumed() -> None:
    words = [f"w{i} " for i in range(8)]
    script = Script(sse(*paced([0.1] * 4 + [50.0], *words))[0], sse(*answer(*words))[0])
    async with make_client(script, timeouts=STALLS, retry=fixed()) as client:
        start = trio.current_time()
        deltas, stream = await read(client.chat_stream(MESSAGES))
        elapsed = trio.current_time() - start
    assert deltas == ["", *words, "", ""]
    assert [a.cause for a in stream.attempts] == ["timeout", None]
    assert elapsed < 5  # not the 50 s pause


async def test_continue_sends_the_delivered_text_to_continue() -> None:
    unbroken, _ = await read_unbroken(*WORDS)
    rest = [chunk("", role="assistant"), *answer("ld", "!", usage=(20, 2))[1:]]
    script = Script(sse(*cut_after(3, *WORDS))[0], sse(*rest)[0])
    async with make_client(script, retry=fixed()) as client:
        stream = client.chat_stream(MESSAGES, max_tokens=50, restart="continue")
        deltas, stream = await read(stream)
    assert deltas == ["", *WORDS, "", ""]  # the continuation's empty role chunk is dropped
    first, second = script.bodies()
    assert second["messages"] == [*first["messages"], {"role": "assistant", "content": "Hello wör"}]
    assert second["continue_final_message"] is True
    assert second["add_generation_prompt"] is False
    assert (first["max_tokens"], second["max_tokens"]) == (50, 47)  # less the 3 chunks
    assert stream.completion.text == unbroken.text
    assert stream.completion.id == unbroken.id
    # Usage combined: the continuation's, the 3 delivered chunks counted as tokens.
    assert stream.completion.usage == pt.Usage(20, 5, 25)


async def test_continue_falls_back_to_replay_for_n_above_1_and_tool_calls() -> None:
    both = [
        b"data: " + json.dumps(_choices((0, "a"), (1, "b"))).encode() + b"\n\n",
        cut_error(),
    ]
    whole = [
        b"data: " + json.dumps(_choices((0, "a"), (1, "b"))).encode() + b"\n\n",
        b"data: " + json.dumps(_choices((0, "c"), (1, "d"))).encode() + b"\n\n",
        b"data: " + json.dumps(_choices((0, None, "stop"), (1, None, "stop"))).encode() + b"\n\n",
        b"data: [DONE]\n\n",
    ]
    script = Script(sse(*both)[0], sse(*whole)[0])
    async with make_client(script, retry=fixed()) as client:
        stream = client.chat_stream(MESSAGES, n=2, restart="continue")
        _, stream = await read(stream)
    assert script.bodies()[0] == script.bodies()[1]
    assert [c.message.content for c in stream.completion.choices] == ["ac", "bd"]


def _choices(*choices: tuple[Any, ...]) -> dict[str, Any]:
    out = []
    for index, content, *finish in choices:
        delta = {} if content is None else {"content": content}
        out.append({"index": index, "delta": delta, "finish_reason": (finish or [None])[0]})
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": out,
    }


async def test_leaving_during_the_restart_wait_cancels_and_gives_the_slot_back() -> None:
    script = Script(sse(*cut_after(2, *WORDS))[0], sse(*answer(*WORDS))[0])
    retry = fixed(initial_delay=30.0, max_delay=30.0, min_backoff_factor=1)
    async with make_client(script, retry=retry) as client:
        with trio.move_on_after(10):
            await collect(client.chat_stream(MESSAGES))
        stats = client.statistics()
    assert (stats.cancelled, stats.in_flight, script.calls) == (1, 0, 1)


async def test_the_deadline_is_not_resumed() -> None:
    script = Script(sse(*answer(*WORDS)[:3], 20.0, cut_error())[0], sse(*answer(*WORDS))[0])
    async with make_client(script, timeouts=pt.Timeouts(total=10, read=None)) as client:
        with pytest.raises(pt.APITimeoutError, match=r"Timeouts\.total"):
            await collect(client.chat_stream(MESSAGES))
    assert script.calls == 1


# --------------------------------------------------------------------------- Resume (no I/O)


def _delivered(*payloads: dict[str, Any]) -> Resume:
    assembler = CompletionAssembler()
    for payload in payloads:
        assembler.add(payload)
    reader: Any = type("Reader", (), {"assembler": assembler})()
    return Resume("replay", reader, pt.APIError("broken"))


def _delta(index: int = 0, **delta: Any) -> dict[str, Any]:
    return {"id": "x", "created": 1, "choices": [{"index": index, "delta": delta}]}


def test_tool_call_deltas_are_replayed_by_name_and_arguments_not_by_id() -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    resume = _delivered(
        _delta(tool_calls=[{**call, "function": {"name": "f", "arguments": '{"a"'}}]),
    )
    again = {**call, "id": "call_2", "function": {"name": "f", "arguments": '{"a": 1}'}}
    trimmed = resume.trim(_delta(tool_calls=[again]))
    assert trimmed is not None
    assert trimmed["choices"][0]["delta"] == {
        "tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]
    }
    with pytest.raises(Diverged, match="calls 'g', not 'f'"):
        _delivered(_delta(tool_calls=[{**call, "function": {"name": "f"}}])).trim(
            _delta(tool_calls=[{**call, "function": {"name": "g"}}])
        )


def test_logprobs_delivered_are_dropped_by_count() -> None:
    entry = {"token": "a", "logprob": -0.1}
    first = {**_delta(content="a"), "choices": [
        {"index": 0, "delta": {"content": "a"}, "logprobs": {"content": [entry]}}
    ]}  # fmt: skip
    resume = _delivered(first)
    again = {"index": 0, "delta": {"content": "ab"}, "logprobs": {"content": [entry, entry]}}
    trimmed = resume.trim({**_delta(), "choices": [again]})
    assert trimmed is not None
    [choice] = trimmed["choices"]
    assert choice["delta"] == {"content": "b"}
    assert choice["logprobs"] == {"content": [entry]}


def test_a_finished_choice_must_not_go_on() -> None:
    finished = {
        **_delta(),
        "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}],
    }
    resume = _delivered(finished)
    assert resume.trim(_delta(content="a")) is None
    with pytest.raises(Diverged, match="past the end"):
        resume.trim(_delta(content="b"))


def test_null_fields_of_a_replayed_chunk_are_nothing() -> None:
    # A finished choice replayed from its start: {"role": ..., "content": null} is no text.
    choice = {"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}
    resume = _delivered({**_delta(), "choices": [choice]})
    assert resume.trim(_delta(role="assistant", content=None)) is None
    assert resume.trim(_delta(content="a", refusal=None, tool_calls=None)) is None


def test_the_first_attempt_s_id_is_kept() -> None:
    resume = _delivered(_delta(content="a"))
    trimmed = resume.trim({**_delta(content="ab"), "id": "y", "created": 2})
    assert trimmed is not None
    assert (trimmed["id"], trimmed["created"]) == ("x", 1)


async def test_a_transport_error_on_the_replay_before_its_first_chunk_is_retried() -> None:
    script = Script(
        sse(*cut_after(2, *WORDS))[0],
        lambda _: (_ for _ in ()).throw(httpx2.ConnectError("refused")),
        sse(*answer(*WORDS))[0],
    )
    async with make_client(script, retry=fixed()) as client:
        deltas, stream = await read(client.chat_stream(MESSAGES))
    assert deltas == ["", *WORDS, "", ""]
    assert [a.cause for a in stream.attempts] == ["connection", "connection", None]
