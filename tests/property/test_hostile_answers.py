"""Any answer a hostile server may send (a valid completion with a field replaced by a
non-finite number, a number out of range, nesting of any depth, or a string with lone
surrogate escapes) is either a completion that serialises back to strict JSON or the
request's own :class:`~paradigm_trio.APIResponseValidationError`: never another
exception (``OverflowError``, ``RecursionError``), never a success that is not JSON."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paradigm_trio as pt

from .strategies import examples

MESSAGES = [{"role": "user", "content": "Hi"}]
BODY = {
    "id": "c", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}  # fmt: skip
PLACES = [("created",), ("choices", 0, "index"), ("choices", 0, "message", "content"),
          ("usage", "prompt_tokens"), ("usage", "completion_tokens"), ("usage", "total_tokens"),
          ("id",), ("model",), ("choices", 0, "finish_reason"), ("extra",)]  # fmt: skip
tokens = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1", "1e300", '"\\ud800"',
                     '"a\\udfffb"', "9007199254740993", "2.5"]),
    st.integers(1, 3000).map(lambda d: "[" * d + "]" * d),
    st.integers(1, 3000).map(lambda d: '{"a": ' * d + "1" + "}" * d),
)  # fmt: skip


def _answer(place: tuple[Any, ...], token: str) -> str:
    body = json.loads(json.dumps(BODY))
    node = body
    for step in place[:-1]:
        node = node[step]
    node[place[-1]] = "__TOKEN__"
    return json.dumps(body).replace('"__TOKEN__"', token)


@pytest.mark.anyio
@settings(max_examples=examples(2.0))
@given(place=st.sampled_from(PLACES), token=tokens)
async def test_a_hostile_answer_is_a_strict_completion_or_an_invalid_response(
    place: tuple[Any, ...], token: str
) -> None:
    text = _answer(place, token)
    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, content=text.encode()))
    retry = pt.RetryPolicy(attempts=1)
    async with pt.Client(
        api_key="sk-test-key-1", base_url="http://test/api/v2", transport=transport, retry=retry
    ) as client:
        try:
            completion = await client.chat(MESSAGES)
        except pt.APIResponseValidationError:
            return
    json.dumps(completion.raw, allow_nan=False)  # strict JSON
    assert completion.usage is None or 0 <= completion.usage.total_tokens <= 2**53
