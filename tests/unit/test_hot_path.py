"""The shape of the hot path (``docs/performance.md``, scenario 8): what a plain request
does not do.  Every frame on a request's way is passed through at each of its wake-ups,
and every lookup is paid on every request."""

from __future__ import annotations

from unittest.mock import patch

import httpx2
import pytest

import paradigm_trio as pt
from paradigm_trio._endpoints import _chat
from paradigm_trio._engine._attempts import Call

from .helpers import MESSAGES, make_client

pytestmark = pytest.mark.anyio


def _embedding(request: httpx2.Request) -> httpx2.Response:
    data = [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}]
    return httpx2.Response(200, json={"object": "list", "data": data, "model": "m"})


async def test_embedding_one_input_is_the_engines_coroutine_itself() -> None:
    async with make_client(_embedding) as client:
        request = pt.EmbeddingRequest(inputs="one", encoding_format="float")
        coroutine = client._embedder.embed(request, None, None)
        assert coroutine.cr_code is Call.run.__code__  # type: ignore[attr-defined]
        assert (await coroutine).vectors == [[0.5, 0.25]]
        assert (await client.embed("one", encoding_format="float")).vectors == [[0.5, 0.25]]


def test_a_plain_chat_request_builds_its_tool_rules_once() -> None:
    endpoint = _chat.ChatEndpoint("m")
    plain = pt.ChatRequest(messages=MESSAGES)
    with patch.object(_chat.ToolCallRules, "of", side_effect=AssertionError("built")):
        assert endpoint.follow_up(plain) is None  # no rules: not built to find out
    tool = pt.function_tool("f", {"type": "object"})
    with_tools = pt.ChatRequest(messages=MESSAGES, tools=[tool])
    assert endpoint.follow_up(with_tools) is not None
    unchecked = pt.ChatRequest(messages=MESSAGES, tools=[tool], validate_tool_calls=False)
    assert endpoint.follow_up(unchecked) is None
    assert endpoint.follow_up(plain, stream=True) is not None  # (a live stream's resume)
