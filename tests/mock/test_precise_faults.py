"""Faults served precisely: a stream fault at a chosen chunk (cut, malformed chunk, error
event, a stall of S seconds), broken tool calls (not JSON, schema-breaking, an unknown
tool), each by script and by rate, deterministic per key and attempt; and vLLM's
``continue_final_message``, whose continuation is exactly the rest of the answer."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import httpx2
import jsonschema  # type: ignore[import-untyped]
import pytest
import trio

import mock_server as ms
from mock_server._cli import build_parser, config_from_args

from ._helpers import chat_body, keyed, parse_sse, stream_chunks

pytestmark = pytest.mark.anyio

STORY = chat_body("Tell me a long story about a lighthouse keeper", stream=True)
PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": PARAMETERS}},
    {"type": "function", "function": {"name": "get_time"}},
]
CALLING = chat_body("Use get_weather please", tools=TOOLS)


def _choices(chunks: list[Any]) -> list[Any]:
    """What a chunk says (its id and creation time aside)."""
    return [chunk["choices"] for chunk in chunks]


def _chunks(events: list[tuple[str | None, str]]) -> list[Any]:
    return _choices([json.loads(data) for _, data in events])


async def _post(server: ms.MockServer, body: dict[str, Any], key: str) -> httpx2.Response:
    async with httpx2.AsyncClient(base_url=server.url, timeout=10) as client:
        try:
            return await client.post("/chat/completions", json=body, headers=keyed(key))
        except httpx2.RemoteProtocolError as exc:  # a cut: keep what arrived
            raise AssertionError("cut") from exc


async def _received(server: ms.MockServer, body: dict[str, Any], key: str) -> bytes:
    """Every byte of a streamed answer, up to a cut."""
    received = bytearray()
    async with httpx2.AsyncClient(base_url=server.url, timeout=10) as client:
        async with client.stream("POST", "/chat/completions", json=body, headers=keyed(key)) as r:
            try:
                async for piece in r.aiter_raw():
                    received += piece
            except httpx2.RemoteProtocolError:
                pass
    return bytes(received)


async def test_each_stream_fault_strikes_at_the_chunk_chosen() -> None:
    async with ms.serve() as server:
        whole = stream_chunks((await _post(server, STORY, "whole")).text)
        assert len(whole) > 6
        server.script("cut", ["stream_cut@4"])
        server.script("bad", [ms.Fault("malformed", at=3)])
        server.script("err", [{"kind": "stream_error", "at": 5}])
        cut = parse_sse((await _received(server, STORY, "cut")).decode())
        bad = parse_sse((await _received(server, STORY, "bad")).decode())
        err = parse_sse((await _received(server, STORY, "err")).decode())
        records = {r.key: r for r in server.requests()}
    assert _chunks(cut) == _choices(whole[:4])
    assert records["cut"].outcome == "stream_cut"
    assert records["cut"].completion_tokens == 3  # the role chunk, then 3 words
    assert _chunks(bad[:3]) == _choices(whole[:3])
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad[3][1])
    assert _chunks(bad[4:-1]) == _choices(whole[3:])  # then the rest, and [DONE]
    assert bad[-1][1] == "[DONE]"
    assert _chunks(err[:5]) == _choices(whole[:5])
    assert err[5][0] == "error"
    assert len(err) == 6


async def test_a_stall_of_s_seconds_at_chunk_n_then_the_rest() -> None:
    async with ms.serve() as server:
        whole = (await _post(server, STORY, "whole")).text
        server.script("st", ["stream_stall@3+0.3"])
        times: list[float] = []
        received = bytearray()
        async with httpx2.AsyncClient(base_url=server.url, timeout=10) as client:
            async with client.stream(
                "POST", "/chat/completions", json=STORY, headers=keyed("st")
            ) as response:
                async for piece in response.aiter_raw():
                    received += piece
                    times.append(trio.current_time())
        [record] = [r for r in server.requests() if r.key == "st"]
    events = parse_sse(received.decode())
    assert _chunks(events[:-1]) == _choices(stream_chunks(whole))  # all of it, in the end
    assert events[-1][1] == "[DONE]"
    assert record.outcome == "stream_stall"
    assert record.finish is not None
    assert record.completion_tokens == len(stream_chunks(whole)) - 2
    assert times[-1] - times[0] >= 0.29  # (a lower bound: the silence was served)


async def test_positions_and_stall_lengths_from_the_config_apply_to_rates() -> None:
    config = ms.MockConfig(faults=ms.FaultRates(stream_cut=1.0), fault_at=2)
    async with ms.serve(config) as server:
        cut = parse_sse((await _received(server, STORY, "a")).decode())
        plain = await _post(server, chat_body("Hello"), "p")  # not a stream: served
    assert len(cut) == 2
    assert plain.status_code == 200
    assert ms.MockConfig(stall_for=2).stall_for == 2.0
    args = build_parser().parse_args(["--fault", "stream_stall@3+1.5=0.2", "--fault", "hang=0.1"])
    parsed = config_from_args(args)
    assert (parsed.fault_at, parsed.stall_for) == (3, 1.5)
    assert parsed.faults.stream_stall == 0.2
    args = build_parser().parse_args(["--fault-at", "5", "--stall-for", "0.5"])
    assert (config_from_args(args).fault_at, config_from_args(args).stall_for) == (5, 0.5)
    both = ["--fault", "stream_cut@3=0.1", "--fault", "stream_error@4=0.1"]
    with pytest.raises(ValueError, match="fault_at is 3 already"):
        config_from_args(build_parser().parse_args(both))


def test_fault_positions_are_checked() -> None:
    assert ms.Fault.parse("stream_cut@3") == ms.Fault("stream_cut", at=3)
    assert ms.Fault.parse("stream_stall@0+2") == ms.Fault("stream_stall", at=0, stall_for=2.0)
    assert ms.Fault.parse("503") == ms.Fault("503")
    for bad, message in [
        ("hang@3", "^at: only for"),
        ("stream_cut@x", "KIND@N"),
        ("stream_cut@-1", "^at"),
        ("stream_cut@2+1", "^stall_for: only for kind 'stream_stall'"),
    ]:
        with pytest.raises(ValueError, match=message):
            ms.Fault.parse(bad)
    with pytest.raises(ValueError, match=r"^fault_at"):
        ms.MockConfig(fault_at=-1)
    with pytest.raises(ValueError, match=r"^stall_for"):
        ms.MockConfig(stall_for=-1.0)


# --------------------------------------------------------------------------- tool calls


def _calls(response: httpx2.Response) -> list[dict[str, Any]]:
    message = response.json()["choices"][0]["message"]
    return message["tool_calls"]  # type: ignore[no-any-return]


def _streamed_calls(text: str) -> list[dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for chunk in stream_chunks(text):
        for choice in chunk["choices"]:
            for delta in choice["delta"].get("tool_calls") or ():
                call = calls.setdefault(delta["index"], {"name": "", "arguments": ""})
                call["name"] += delta.get("function", {}).get("name") or ""
                call["arguments"] += delta.get("function", {}).get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


async def test_each_tool_call_fault_breaks_the_call_as_it_says() -> None:
    async with ms.serve() as server:
        good = _calls(await _post(server, CALLING, "good"))[0]["function"]
        for kind in ms.TOOL_FAULT_KINDS - {"tool_call_malformed"}:
            server.script(kind, [kind, "ok"])
        broken = {k: _calls(await _post(server, CALLING, k))[0]["function"] for k in
                  ("tool_call_not_json", "tool_call_invalid", "tool_call_unknown")}  # fmt: skip
        again = _calls(await _post(server, CALLING, "tool_call_invalid"))[0]["function"]
        streamed = _streamed_calls((await _post(server, {**CALLING, "stream": True}, "s1")).text)
        server.script("s2", ["tool_call_not_json"])
        streamed_bad = _streamed_calls(
            (await _post(server, {**CALLING, "stream": True}, "s2")).text
        )
        outcomes = {r.key: r.outcome for r in server.requests()}
    jsonschema.validate(json.loads(good["arguments"]), PARAMETERS)
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken["tool_call_not_json"]["arguments"])
    assert broken["tool_call_not_json"]["arguments"] == good["arguments"][:-1]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(broken["tool_call_invalid"]["arguments"]), PARAMETERS)
    assert broken["tool_call_unknown"]["name"] == "get_weather_unknown"
    assert broken["tool_call_unknown"]["arguments"] == good["arguments"]
    assert again == good  # the next attempt of the key is served whole
    assert streamed == [{"name": "get_weather", "arguments": good["arguments"]}]
    assert streamed_bad == [{"name": "get_weather", "arguments": good["arguments"][:-1]}]
    assert outcomes["tool_call_unknown"] == "tool_call_unknown"


async def test_tool_call_faults_by_rate_are_deterministic_and_spare_plain_answers() -> None:
    rates = ms.FaultRates(tool_call_not_json=0.2, tool_call_invalid=0.2, tool_call_unknown=0.2)
    outcomes: list[list[str]] = []
    for _ in range(2):
        async with ms.serve(ms.MockConfig(seed=7, faults=rates)) as server:
            for i in range(30):
                await _post(server, CALLING, f"k{i % 15}")  # 15 keys, 2 attempts each
            text = await _post(server, chat_body("no tools here"), "plain")
            outcomes.append([r.outcome for r in server.requests()])
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0][:-1]) == {"ok", "tool_call_not_json", "tool_call_invalid",
                                     "tool_call_unknown"}  # fmt: skip
    assert text.status_code == 200
    assert outcomes[0][-1] == "ok"  # a drawn tool fault spares an answer without calls


# --------------------------------------------------------------------------- continuations


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("cut", [0, 1, 7, 12, 25])
async def test_a_continuation_is_exactly_the_rest_of_the_answer(stream: bool, cut: int) -> None:
    body = chat_body("Tell me a long story about a lighthouse keeper", max_tokens=40)
    async with ms.serve() as server:
        whole = (await _post(server, body, "o")).json()["choices"][0]["message"]["content"]
        prefix = whole[:cut]
        # As in vLLM, the continuation's max_tokens bounds what it adds: the tokens (one a
        # word) wholly in the prefix are taken off, so the rest ends where the whole did.
        ends = itertools.accumulate(len(p) for p in re.findall(r"\S+\s*", whole))
        asked = {
            **body,
            "messages": [*body["messages"], {"role": "assistant", "content": prefix}],
            "continue_final_message": True,
            "add_generation_prompt": False,
            "stream": stream,
            "max_tokens": 40 - sum(end <= cut for end in ends),
        }
        response = await _post(server, asked, "c")
    if stream:
        rest = "".join(
            c["choices"][0]["delta"].get("content") or ""
            for c in stream_chunks(response.text)
            if c["choices"]
        )
    else:
        rest = response.json()["choices"][0]["message"]["content"]
    assert prefix + rest == whole
    assert len(rest) == len(whole) - cut


async def test_a_continuation_s_max_tokens_bounds_what_it_adds() -> None:
    body = chat_body("Tell me a long story about a lighthouse keeper")
    async with ms.serve() as server:
        whole = (await _post(server, body, "o")).json()["choices"][0]["message"]["content"]
        words = re.findall(r"\S+\s*", whole)
        asked = {
            **body,
            "messages": [*body["messages"], {"role": "assistant", "content": "".join(words[:3])}],
            "continue_final_message": True,
            "add_generation_prompt": False,
            "max_tokens": 2,
        }
        answer = (await _post(server, asked, "c")).json()["choices"][0]
    assert answer["message"]["content"] == "".join(words[3:5]).rstrip()
    assert answer["finish_reason"] == "length"


async def test_continuation_flags_are_checked_like_vllm() -> None:
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hel"}]
    async with ms.serve() as server:
        both = await _post(server, {**chat_body(), "messages": history,
                                    "continue_final_message": True}, "a")  # fmt: skip
        user_last = await _post(server, {**chat_body(), "continue_final_message": True,
                                         "add_generation_prompt": False}, "b")  # fmt: skip
        typed = await _post(server, {**chat_body(), "add_generation_prompt": "no"}, "c")
        plain = await _post(server, {**chat_body(), "messages": history,
                                     "add_generation_prompt": True}, "d")  # fmt: skip
        unrelated = await _post(server, {**chat_body(), "messages": [history[0],
                                {"role": "assistant", "content": "Zzz"}],
                                "continue_final_message": True,
                                "add_generation_prompt": False}, "e")  # fmt: skip
        original = await _post(server, {**chat_body(), "messages": history[:1]}, "f")
    assert both.status_code == 400
    assert "add_generation_prompt" in both.json()["error"]["message"]
    assert user_last.status_code == 400
    assert typed.status_code == 400
    assert plain.status_code == 200
    whole = original.json()["choices"][0]["message"]["content"]
    assert unrelated.json()["choices"][0]["message"]["content"] == whole
