"""Stream restart: a live stream delivers one answer, once, in order, or raises.

16. For any schedule of cuts, malformed chunks and stalls (each at any chunk) within the
    attempts, a live ``chat_stream`` against the deterministic mock hands out exactly the
    chunks of the unbroken answer, each once, in order, and ends with its text and
    finish; by replay (the same chunks, the same usage; a cut after the finish chunk is a
    complete stream that lost its usage chunk) and by continuation (the same text).

17. With an answer that is not deterministic (the resend answers something else), a
    replay either finds the delivered text at the start of the new answer and reads on
    into it, or raises the error that broke the stream, having handed out nothing of
    the new answer: never a splice of two answers.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import mock_server as ms
import paradigm_trio as pt

from .strategies import key_of, mock_and_client, run_trio, settle

MESSAGES = [{"role": "user", "content": "Tell me a long story about the sea"}]

positions = st.integers(1, 18)
faults = st.one_of(
    positions.map(lambda n: f"stream_cut@{n}"),
    positions.map(lambda n: f"malformed@{n}"),
    positions.map(lambda n: f"stream_stall@{n}+30"),
)


async def _read(client: pt.Client, custom_id: str, **kwargs: Any) -> tuple[list[str], Any]:
    deltas: list[str] = []
    async with client.chat_stream(MESSAGES, custom_id=custom_id, max_tokens=20, **kwargs) as s:
        async for chunk in s:
            deltas.append(chunk.delta)
    return deltas, s


@given(schedule=st.lists(faults, max_size=3), restart=st.sampled_from(["replay", "continue"]))
def test_any_schedule_of_breaks_hands_out_the_unbroken_answer_once(
    schedule: list[str], restart: str
) -> None:
    timeouts = pt.Timeouts(read=0.5, stall_factor=5, stall_floor=0.2)
    retry = pt.RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.02)

    async def run() -> None:
        config = ms.MockConfig(seed=7)
        async with mock_and_client(config=config, timeouts=timeouts, retry=retry) as (
            server,
            client,
        ):
            whole, unbroken = await _read(client, "whole")
            server.script(key_of("broken"), [*schedule, "ok"])
            deltas, stream = await _read(client, "broken", restart=restart)
            await settle(server)
        assert "".join(deltas) == "".join(whole), schedule
        if restart == "replay":
            # (a cut after the finish chunk ends a complete stream: only the usage is lost)
            assert deltas == whole[: len(deltas)]
            assert len(whole) - len(deltas) <= 1
            if stream.completion.usage is not None:
                assert stream.completion.usage == unbroken.completion.usage
        got, expected = stream.completion.choices[0], unbroken.completion.choices[0]
        assert (got.message.content, got.finish_reason) == (
            expected.message.content,
            expected.finish_reason,
        )
        assert len(stream.attempts) <= len(schedule) + 1
        assert stream.attempts[-1].cause is None

    run_trio(run)


# --------------------------------------------------------------------------- not deterministic

words = st.lists(st.sampled_from(["a", "b", "a ", "ab", " "]), min_size=1, max_size=6)


def _events(pieces: list[str], *, cut: int | None = None) -> bytes:
    def data(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [choice]}  # fmt: skip
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    events = [data({"role": "assistant", "content": ""})]
    events += [data({"content": p}) for p in pieces]
    if cut is not None:
        return b"".join(events[: 1 + cut])
    return b"".join([*events, data({}, "stop"), b"data: [DONE]\n\n"])


@given(first=words, second=words, data=st.data())
def test_a_replay_that_answers_otherwise_reads_on_or_raises_never_splices(
    first: list[str], second: list[str], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(1, len(first)))
    delivered = "".join(first[:cut])
    answers = [_events(first, cut=cut), _events(second)]

    async def handler(request: httpx2.Request) -> httpx2.Response:
        body = answers.pop(0)
        breaks = bool(answers)  # the first answer: the connection breaks after ``cut`` words

        async def stream() -> Any:
            yield body
            if breaks:
                raise httpx2.RemoteProtocolError("peer closed connection")

        return httpx2.Response(200, headers={"content-type": "text/event-stream"},
                               content=stream())  # fmt: skip

    async def run() -> tuple[list[str], BaseException | None]:
        deltas: list[str] = []
        transport = httpx2.MockTransport(handler)
        retry = pt.RetryPolicy(initial_delay=0.01, jitter=0)
        async with pt.Client(api_key="sk-property", transport=transport, retry=retry) as client:
            try:
                async with client.chat_stream(MESSAGES) as stream:
                    async for chunk in stream:
                        deltas.append(chunk.delta)
            except pt.IncompleteStreamError as exc:
                return deltas, exc
            assert stream.completion.text == "".join(deltas)
        return deltas, None

    deltas, error = trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    text = "".join(deltas)
    if "".join(second).startswith(delivered):
        assert error is None
        assert text == "".join(second)  # the delivered part once, then the new answer's rest
    else:
        assert error is not None
        assert text == delivered  # nothing of the other answer
        assert any("not resumed" in note for note in error.__notes__)
