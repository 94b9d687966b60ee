"""Scenario 14: the token cost of resuming a broken live stream, by replay and by continue.

One ``chat_stream`` of a long answer from the in-process mock (deterministic content, a
token a word), cut after 10 %, 50 % and 90 % of its words (``stream_cut@N``) and resumed
with ``restart="replay"`` and with ``restart="continue"``, beside the unbroken stream.  The
tokens are the server's: each attempt's prompt tokens from the mock's request log; as
completion tokens, the words streamed before the cut for the broken attempt (what a server
that stops at the disconnect generated) and the reply produced for the last.  Every run
also checks that the caller read the unbroken answer's text, once.
"""

from __future__ import annotations

import hashlib
from typing import Any

import trio

from ._common import Section, Table

WORDS = 400
CUTS = (0.1, 0.5, 0.9)
MESSAGES = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper"}]


def _key(custom_id: str) -> str:
    return "pt-" + hashlib.sha256(custom_id.encode()).hexdigest()[:32]


async def _measure(words: int) -> list[list[Any]]:
    import mock_server as ms
    import paradigm_trio as pt

    config = ms.MockConfig(seed=11, reply_tokens=(words, words))
    rows: list[list[Any]] = []
    retry = pt.RetryPolicy(initial_delay=0.01, max_delay=0.01)
    async with (
        ms.serve(config) as server,
        pt.Client(api_key="sk-bench-restart", base_url=server.url, retry=retry) as client,
    ):

        async def stream(custom_id: str, restart: str | None) -> str:
            async with client.chat_stream(MESSAGES, custom_id=custom_id, restart=restart) as s:
                return "".join([chunk.delta async for chunk in s])

        whole = await stream("unbroken", None)
        [record] = [r for r in server.requests() if r.key == _key("unbroken")]
        base = (record.prompt_tokens or 0) + (record.completion_tokens or 0)
        rows.append(["-", "unbroken", 1, record.prompt_tokens, record.completion_tokens, base,
                     "1.00x"])  # fmt: skip
        for share in CUTS:
            cut = max(1, round(share * words))
            for restart in ("replay", "continue"):
                custom_id = f"{restart}-{share}"
                server.script(_key(custom_id), [f"stream_cut@{1 + cut}", "ok"])
                text = await stream(custom_id, restart)
                assert text == whole, (restart, share)  # once, in order, no gap
                broken, last = [r for r in server.requests() if r.key == _key(custom_id)]
                prompt = (broken.prompt_tokens or 0) + (last.prompt_tokens or 0)
                completion = cut + (last.completion_tokens or 0)
                total = prompt + completion
                rows.append([f"{share:.0%}", restart, 2, prompt, completion, total,
                             f"{total / base:.2f}x"])  # fmt: skip
    return rows


def run(quick: bool) -> Section:
    words = 200 if quick else WORDS
    section = Section(
        "restart",
        "14. The token cost of a stream restart",
        f"One `chat_stream` of a {words}-word answer from the in-process mock (a token a "
        "word; prompt tokens by its documented approximation), cut after 10 %, 50 % and 90 "
        '% of its words (`stream_cut@N`), resumed by `restart="replay"` (the request '
        "again, the delivered part generated again and dropped) and by "
        '`restart="continue"` (the delivered text sent to be continued, vLLM\'s '
        "`continue_final_message`), beside the unbroken stream.  Each run checks that the "
        "caller read the unbroken answer's text, once.  Completion tokens: the words "
        "streamed before the cut (what a server that stops at the disconnect generated) "
        "plus the last attempt's reply.",
    )
    rows = trio.run(_measure, words)
    table = Table(
        f"tokens the server processed for one {words}-word answer",
        ["cut after", "strategy", "requests", "prompt tokens", "completion tokens",
         "total", "vs unbroken"],
        rows=rows,
    )  # fmt: skip
    table.notes.append(
        "A replay generates the delivered part twice: its cost grows with how late the "
        "break comes (up to twice the completion).  A continuation generates each token "
        "once, and reads the delivered text as prompt instead (cheaper to serve: prefill, "
        "not decoding, and cached by vLLM's prefix cache), so its completion tokens equal "
        "the unbroken answer's.  The mock counts a prompt by characters (4 a token: about "
        "1.4 a word) and a completion by words, so the continuation's prompt weighs about "
        "40 % more here than the same text as completion."
    )
    section.tables.append(table)
    return section
