"""``paradigm-trio batch`` lines offering tools: function tools become typed fields (so the
answer's calls are checked), other tools are sent as they are; a ``ToolCallError``
record keeps the answer."""

from __future__ import annotations

import json

import paradigm_trio as pt
from paradigm_trio.cli._batchfile import _request_from, result_record

SEARCH = {
    "type": "function",
    "function": {"name": "search", "parameters": {"type": "object", "required": ["q"]}},
}
MESSAGES = [{"role": "user", "content": "search x"}]


def test_function_tools_are_typed_and_the_body_is_unchanged() -> None:
    line = {"messages": MESSAGES, "tools": [SEARCH], "tool_choice": "auto", "top_k": 3}
    request = _request_from(line, "a")
    assert isinstance(request, pt.ChatRequest)
    assert request.tools == (SEARCH,)
    assert request.tool_choice == "auto"
    assert request.extra == {"top_k": 3}
    body = json.loads(request.encode_body(request.to_body("m")))
    assert {k: body[k] for k in ("tools", "tool_choice", "top_k")} == {
        "tools": [SEARCH], "tool_choice": "auto", "top_k": 3
    }  # fmt: skip


def test_tools_it_cannot_check_are_sent_as_they_are() -> None:
    retrieval = {"type": "retrieval"}
    broken = {"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}
    for tools in ([retrieval], [broken], [SEARCH, SEARCH]):
        request = _request_from({"messages": MESSAGES, "tools": tools}, "b")
        assert isinstance(request, pt.ChatRequest)
        assert request.tools is None
        assert request.extra == {"tools": tools}


def test_a_tool_call_error_record_keeps_the_answer() -> None:
    raw = {
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "tool_calls": [
                {"id": "k", "type": "function",
                 "function": {"name": "search", "arguments": "{}"}}]}}],
    }  # fmt: skip
    completion = pt.ChatCompletion.from_json(raw)
    error = pt.ToolCallError(
        "the answer calls 'search' with arguments that do not match its parameters",
        tool="search",
        reason="invalid_arguments",
        completion=completion,
    )
    record = result_record("c1", None, error, 1, 0.1)
    assert record["error"]["code"] == "ToolCallError"
    assert record["response"]["body"] == raw
