"""The JSONL reader of the CLI: one unique id per line, whatever the ids in the file."""

from __future__ import annotations

import json
from pathlib import Path

import paradigm_trio as pt
from paradigm_trio.cli._batchfile import read_input, result_record

MESSAGES = [{"role": "user", "content": "hi"}]


def test_ids_are_unique_even_when_real_ids_look_made_up(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [
        "{not json",  # made-up id line-1
        json.dumps({"custom_id": "line-1", "messages": MESSAGES}),  # collides with it
        json.dumps({"custom_id": "a", "messages": MESSAGES}),
        json.dumps({"custom_id": "a", "messages": MESSAGES}),  # duplicate: a#line-4
        json.dumps({"custom_id": "a#line-4", "messages": MESSAGES}),  # collides with that
        json.dumps({"messages": MESSAGES}),  # no id: line-6
        "",
        json.dumps({"custom_id": "line-8", "messages": MESSAGES}),
        "[]",  # line-9
    ]
    path.write_text("\n".join(lines) + "\n")
    items = list(read_input(path))
    ids = [item.custom_id for item in items]
    assert len(ids) == len(set(ids)) == 8  # one per non-blank line, all different
    by_line = {item.line: item for item in items}
    assert by_line[1].custom_id == "line-1"
    assert by_line[1].request is None
    assert by_line[2].request is None  # its id was already given to line 1
    assert "duplicate custom_id 'line-1'" in (by_line[2].problem or "")
    assert by_line[3].request is not None
    assert by_line[4].custom_id == "a#line-4"
    assert by_line[5].request is None
    assert by_line[6].custom_id == "line-6"
    assert by_line[6].request is not None
    assert by_line[8].request is not None
    assert by_line[9].custom_id == "line-9"
    # the same file gives the same ids (a resume relies on it)
    assert [item.custom_id for item in read_input(path)] == ids


def test_embeddings_lines_in_both_forms(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [
        {"custom_id": "chat", "url": "/v1/chat/completions", "body": {"messages": MESSAGES}},
        {
            "custom_id": "e1",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "e5", "input": ["a", "b"], "dimensions": 8, "user": "u"},
        },
        {"custom_id": "e2", "input": "short form", "encoding_format": "base64"},
        {"custom_id": "e3", "url": "/api/v2/embeddings", "body": {"input": ""}},
        {"custom_id": "e4", "url": "/v1/embeddings", "body": {"model": "e5"}},
        {"custom_id": "e5", "url": "/v1/embeddings", "body": {"input": [[1, 2]]}},
        {"custom_id": "x", "url": "/v1/completions", "body": {"prompt": "x"}},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    items = {item.custom_id: item for item in read_input(path)}
    assert isinstance(items["chat"].request, pt.ChatRequest)
    e1 = items["e1"].request
    assert isinstance(e1, pt.EmbeddingRequest)
    assert (e1.inputs, e1.model, e1.dimensions, e1.extra) == (("a", "b"), "e5", 8, {"user": "u"})
    assert e1.custom_id == "e1"
    e2 = items["e2"].request
    assert isinstance(e2, pt.EmbeddingRequest)
    assert (e2.inputs, e2.encoding_format) == (("short form",), "base64")
    assert "input[0] is empty" in (items["e3"].problem or "")
    assert "no 'input'" in (items["e4"].problem or "")
    assert "token arrays" in (items["e5"].problem or "")
    assert "/v1/embeddings" in (items["x"].problem or "")


def test_an_embeddings_record_carries_floats_unless_base64_was_asked() -> None:
    answer = pt.Embeddings.from_json(
        {
            "object": "list",
            "model": "e5",
            "data": [{"object": "embedding", "index": 0, "embedding": "AACAPwAAAEA="}],
            "usage": {"prompt_tokens": 2, "total_tokens": 2},
        },
        "req_1",
    )
    plain = pt.EmbeddingRequest(inputs="x")
    record = result_record("e", answer, None, 1, 0.5, plain)
    assert record["response"]["body"]["data"] == [
        {"object": "embedding", "index": 0, "embedding": [1.0, 2.0]}
    ]
    assert record["response"]["request_id"] == "req_1"
    asked = pt.EmbeddingRequest(inputs="x", encoding_format="base64")
    body = result_record("e", answer, None, 1, 0.5, asked)["response"]["body"]
    assert body["data"][0]["embedding"] == "AACAPwAAAEA="


def test_structured_lines_ask_for_output_and_failures_keep_the_answer(tmp_path: Path) -> None:
    schema = {"type": "object", "required": ["a"]}
    path = tmp_path / "in.jsonl"
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    unusual = {"type": "json_schema", "json_schema": {"schema": schema, "description": "d"}}
    lines = [
        {"custom_id": "a", "messages": MESSAGES, "response_format": fmt},
        {"custom_id": "b", "messages": MESSAGES, "guided_json": schema},
        {"custom_id": "c", "messages": MESSAGES, "response_format": unusual},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    a, b, c = (item.request for item in read_input(path))
    assert isinstance(a, pt.ChatRequest)
    assert isinstance(b, pt.ChatRequest)
    assert isinstance(c, pt.ChatRequest)
    assert a.output is not None
    assert (a.output.name, a.output.strict, a.output.form) == ("x", True, "response_format")
    assert a.to_body("m")["response_format"] == fmt  # sent as the line had it
    assert b.output is not None
    assert b.output.form == "guided_json"
    assert c.output is None  # a form paradigm-trio would not send as is: passed through
    assert c.to_body("m")["response_format"] == unusual
    completion = pt.ChatCompletion.from_json(
        {"choices": [{"message": {"role": "assistant", "content": "{}"}}]}, "req_9"
    )
    error = pt.StructuredOutputError("no", raw="{}", errors=("$: 'a' is required",),
                                     completion=completion, request_id="req_9")  # fmt: skip
    record = result_record("a", None, error, 1, 0.1, a)
    assert record["error"]["code"] == "StructuredOutputError"
    assert record["response"]["body"]["choices"][0]["message"]["content"] == "{}"
    ok = result_record("a", completion.with_parsed(pt.OutputSchema({})), None, 1, 0.1, a)
    assert ok["parsed"] == {}
