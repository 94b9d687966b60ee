"""The ``paradigm-trio batch`` command with embeddings lines mixed with chat lines, against
a faulty mock process: OpenAI Batch records, vectors checked, killed with -9 and resumed;
structured and tool-calling lines checked."""

from __future__ import annotations

import base64
import json
import re
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion

import mock_server as ms

from .test_cli import env_for, kill_9_after, mock_url, records, run_cli

__all__ = ["mock_url"]  # the fixture, imported for the tests below

SEED = 3  # the mock_url fixture's
MODEL = "multilingual-e5-large"


def write_mixed(path: Path, chats: int, embeddings: int) -> dict[str, Any]:
    """Chat and embeddings lines, interleaved; returns what each embeddings line asked."""
    asked: dict[str, Any] = {}
    lines = []
    for i in range(max(chats, embeddings)):
        if i < chats:
            body = {"max_tokens": 16, "messages": [{"role": "user", "content": f"Hello {i}"}]}
            lines.append({"custom_id": f"chat-{i}", "url": "/v1/chat/completions", "body": body})
        if i < embeddings:
            custom_id = f"emb-{i}"
            if i % 10 == 0:  # the short form, two inputs, base64
                texts = [f"chunk {i}a", f"chunk {i}b"]
                lines.append({"custom_id": custom_id, "input": texts, "encoding_format": "base64"})
                asked[custom_id] = (texts, ms.DEFAULT_EMBEDDING_DIMENSIONS, True)
            else:
                body = {"model": MODEL, "input": f"chunk {i}", "dimensions": 8}
                lines.append({"custom_id": custom_id, "url": "/v1/embeddings", "body": body})
                asked[custom_id] = ([f"chunk {i}"], 8, False)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return asked


def check_records(recs: list[dict[str, Any]], asked: dict[str, Any]) -> None:
    for rec in recs:
        if rec["error"] is not None:
            continue
        body = rec["response"]["body"]
        if not str(rec["custom_id"]).startswith("emb-"):
            ChatCompletion.model_validate(body)
            continue
        texts, dimensions, b64 = asked[rec["custom_id"]]
        if not b64:  # (the SDK's type holds decoded vectors only)
            CreateEmbeddingResponse.model_validate(body)
        assert [item["index"] for item in body["data"]] == list(range(len(texts)))
        for text, item in zip(texts, body["data"], strict=True):
            vector = item["embedding"]
            if b64:
                raw = base64.b64decode(vector)
                vector = list(struct.unpack(f"<{len(raw) // 4}f", raw))
            expected = ms.embedding_vector(text, model=MODEL, dimensions=dimensions, seed=SEED)
            assert vector == expected, rec["custom_id"]


def test_mixed_chat_and_embeddings_killed_and_resumed(tmp_path: Path, mock_url: str) -> None:
    src = tmp_path / "in.jsonl"
    asked = write_mixed(src, chats=80, embeddings=240)
    env = env_for(mock_url)
    out = tmp_path / "out.jsonl"
    kill_9_after(["batch", str(src), "-o", str(out), "--concurrency", "4", "-q"], env, out, 6000)
    whole = out.read_text().split("\n")[:-1]  # a cut last line aside
    assert 0 < len(whole) < 320
    resumed = run_cli("batch", str(src), "-o", str(out), "--concurrency", "8", env=env)
    assert resumed.returncode in (0, 1), resumed.stderr
    assert "Resuming" in resumed.stderr
    got = records(out)
    ids = [rec["custom_id"] for rec in got]
    want = {f"chat-{i}" for i in range(80)} | {f"emb-{i}" for i in range(240)}
    assert len(ids) == len(set(ids)) == 320
    assert set(ids) == want
    check_records(got, asked)  # type: ignore[arg-type]
    embedded = [rec for rec in got if str(rec["custom_id"]).startswith("emb-")]
    assert sum(rec["error"] is None for rec in embedded) >= 230  # faults are retried


def test_structured_lines_get_their_parsed_object(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
        "required": ["title", "year"],
    }
    lines = [
        {"custom_id": "rf", "url": "/v1/chat/completions", "body": {
            "messages": [{"role": "user", "content": "Film 1"}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "film", "schema": schema}}}},
        {"custom_id": "gj", "messages": [{"role": "user", "content": "Film 2"}],
         "guided_json": schema},
        {"custom_id": "gc", "messages": [{"role": "user", "content": "Yes?"}],
         "guided_choice": ["yes", "no"], "n": 2},
        {"custom_id": "tool", "messages": [{"role": "user", "content": "call get_time"}],
         "tools": [{"type": "function", "function": {"name": "get_time"}}]},
    ]  # fmt: skip
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    proc = run_cli("batch", str(src), "-o", str(out), "--mock", "-q")
    assert proc.returncode == 0, proc.stderr
    recs = {rec["custom_id"]: rec for rec in records(out)}
    for custom_id in ("rf", "gj"):
        parsed = recs[custom_id]["parsed"]
        assert set(parsed) == {"title", "year"}
        body = recs[custom_id]["response"]["body"]
        assert json.loads(body["choices"][0]["message"]["content"]) == parsed
    assert "parsed" not in recs["gc"]
    assert [c["message"]["content"] in ("yes", "no") for c in
            recs["gc"]["response"]["body"]["choices"]] == [True, True]  # fmt: skip
    call = recs["tool"]["response"]["body"]["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_time"


def test_a_line_whose_answer_calls_a_tool_never_offered_is_a_tool_call_error(
    tmp_path: Path,
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mock_server", "--port", "0", "--fault", "tool_call_unknown=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        match = re.search(r"(http://127\.0\.0\.1:\d+/api/v2)", proc.stdout.readline())
        assert match
        tool = {"type": "function", "function": {"name": "get_time"}}
        lines = [
            {"custom_id": f"t{i}", "messages": [{"role": "user", "content": "call get_time"}],
             "tools": [tool]}
            for i in range(3)
        ]  # fmt: skip
        lines.append({"custom_id": "plain", "messages": [{"role": "user", "content": "Hi"}]})
        src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        src.write_text("".join(json.dumps(line) + "\n" for line in lines))
        run = run_cli("batch", str(src), "-o", str(out), "-q", env=env_for(match.group(1)))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert run.returncode == 1, run.stderr
    recs = {rec["custom_id"]: rec for rec in records(out)}
    assert recs["plain"]["error"] is None
    for i in range(3):
        rec = recs[f"t{i}"]
        assert rec["error"]["code"] == "ToolCallError"
        assert "not offered" in rec["error"]["message"]
        call = rec["response"]["body"]["choices"][0]["message"]["tool_calls"][0]
        assert call["function"]["name"] == "get_time_unknown"
