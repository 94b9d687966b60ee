"""Stall detection (``Timeouts.stall_factor``): a stream silent far beyond its own pace
fails as a timeout; a streamed batch item is resent, a ``chat_stream`` raises it; off by
default.  On trio's MockClock: the gaps are virtual seconds."""

from __future__ import annotations

import pytest
import trio

import paradigm_trio as pt
from paradigm_trio._endpoints._pace import WARM_UP, StallWatch

from .helpers import MESSAGES, Script, fixed, make_client
from .test_streaming import answer, collect, sse

pytestmark = pytest.mark.anyio

STALLS = pt.Timeouts(stall_factor=10, stall_floor=0.5)


def paced(gaps: list[float], *words: str) -> list[object]:
    """The pieces of an answer whose chunks come after ``gaps`` (virtual seconds)."""
    events = answer(*words)
    pieces: list[object] = [events[0]]
    for gap, event in zip(gaps, events[1:], strict=False):
        pieces += [gap, event]
    return pieces + events[1 + len(gaps) :]


def test_the_limit_follows_the_longest_gap_after_a_warm_up() -> None:
    watch = StallWatch(10.0, 0.5)
    for _ in range(WARM_UP - 1):
        watch.observe(0.01)
        assert watch.limit() is None
    watch.observe(0.01)
    assert watch.limit() == 0.5  # the floor
    watch.observe(0.2)
    watch.observe(0.05)
    assert watch.limit() == pytest.approx(2.0)  # ten times the longest, not the last
    assert StallWatch.of(pt.Timeouts()) is None  # off by default
    with pytest.raises(ValueError, match="stall_factor"):
        pt.Timeouts(stall_factor=0.5)
    with pytest.raises(ValueError, match="stall_floor"):
        pt.Timeouts(stall_floor=0)


async def test_a_stalled_chat_stream_fails_at_its_pace_not_at_the_read_timeout() -> None:
    words = [f"w{i} " for i in range(8)]
    response, body = sse(*paced([0.1] * 4 + [50.0], *words))
    script = Script(response)
    deltas: list[str] = []
    async with make_client(script, timeouts=STALLS) as client:
        start = trio.current_time()
        with pytest.raises(pt.APITimeoutError, match="the stream stalled") as info:
            await collect(client.chat_stream(MESSAGES, restart=None), deltas)
        elapsed = trio.current_time() - start
    assert info.value.which == "stream"
    assert "Timeouts.stall_factor=10" in str(info.value)
    assert deltas == ["", *words[:4]]
    assert elapsed == pytest.approx(0.4 + 1.0)  # four gaps of 0.1, then ten times 0.1
    assert body.closed is not None


async def test_off_by_default_and_no_limit_before_the_warm_up() -> None:
    words = ["a ", "b ", "c ", "d ", "e "]
    script = Script(sse(*paced([0.1, 0.1, 0.1, 30.0], *words))[0], sse(*paced([30.0], *words))[0])
    async with make_client(script) as client:
        stream = await collect(client.chat_stream(MESSAGES))
        assert stream.completion.text == "".join(words)  # the 30 s pause: sat through
    async with make_client(script, timeouts=STALLS) as client:
        script.steps = script.steps[1:]
        script.requests.clear()
        stream = await collect(client.chat_stream(MESSAGES))  # a pause before any pace
    assert stream.completion.text == "".join(words)


async def test_a_stalled_batch_item_is_resent_whole() -> None:
    words = [f"w{i} " for i in range(6)]
    stalled = sse(*paced([0.05] * 4 + [100.0], *words))[0]
    clean = sse(*paced([0.05] * 6, *words))[0]
    script = Script(stalled, clean)
    async with make_client(script, timeouts=STALLS, retry=fixed(initial_delay=0.1)) as client:
        start = trio.current_time()
        results = await client.chat_batch([MESSAGES], stream=True)
        elapsed = trio.current_time() - start
    [result] = results
    assert result.ok
    assert result.completion is not None
    assert result.completion.text == "".join(words)
    assert result.attempts == 2
    assert elapsed < 5  # not the 100 s silence, nor Timeouts.read
    assert results.statistics.retries_by_cause == {"timeout": 1}
