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


LIMITS = r"nested deeper|not a JSON number|too large"


def _reference(text: str) -> Any:
    """What :func:`pt.parse_json` promises, the slow way: ``json.loads``, then every
    number walked and the nesting measured on the value."""

    def depth(value: Any) -> int:
        if isinstance(value, dict):
            return 1 + max(map(depth, value.values()), default=0)
        if isinstance(value, list):
            return 1 + max(map(depth, value), default=0)
        return 0

    def finite(value: Any) -> bool:
        if isinstance(value, float):
            return value - value == 0
        if isinstance(value, dict):
            return all(map(finite, value.values()))
        if isinstance(value, list):
            return all(map(finite, value))
        return True

    value = json.loads(text)
    if depth(value) > pt.MAX_JSON_DEPTH or not finite(value):
        raise ValueError
    return value


numbers = st.one_of(
    st.sampled_from(["1e999", "1E+999", "-1e400", "1e308", "1e-999", "2e308", "0e000", "1e+0"]),
    st.integers(250, 420).map(lambda n: "1" * n + ".5"),
    st.integers(250, 420).map(lambda n: "1" * n),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
strings = st.text(alphabet='eE+[{0123456789\\"abc ', max_size=40).map(json.dumps)
texts = st.one_of(strings, st.integers(1, 140).map(lambda d: "[" * d + "]" * d))
nested = st.recursive(
    st.one_of(numbers, texts),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(strings, inner), max_size=3).map(
            lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}"
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=examples(3.0))
@given(text=nested, encoding=st.sampled_from(["utf-8", "utf-16", "utf-32-le", "str"]))
def test_parse_json_accepts_and_refuses_what_json_loads_and_a_walk_would(
    text: str, encoding: str
) -> None:
    data: str | bytes = text if encoding == "str" else text.encode(encoding)
    try:
        expected = _reference(text)
    except ValueError:
        with pytest.raises(ValueError, match=LIMITS):
            pt.parse_json(data)
        return
    assert pt.parse_json(data) == expected
