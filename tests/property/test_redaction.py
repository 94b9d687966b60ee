"""Properties of redaction (hypothesis): the key never leaks; nothing else is touched.

1. For any key (printable ASCII, ``/ + = " \\ % & < '`` favoured) and any way a server may
   echo it (as is; JSON-escaped with ``\\/`` and ``\\uXXXX`` escapes mixed character by
   character, hex digits in any case; percent-encoded, mixed case; HTML-escaped; base64 of
   ``Bearer <key>``, of the key, or of a blob holding it; nested: percent-encoded again up
   to three times, quoted-printable, octal, MIME base64 with its line breaks, each after a
   prefix whose escape ends with a digit such as ``Bearer%2520``; in a JSON string or a text body,
   a response header, the request id, an event stream's error), a request through a
   transport that echoes it yields no output holding the key in any encoding: the error's
   str, repr, message, ``.body``, ``.raw``, ``.headers``, ``.attempts``, notes and
   traceback; every event; the batch results' repr; the CLI's JSONL record.
2. Redaction removes the key and nothing else: text around an echo is kept as is.
"""

from __future__ import annotations

import base64
import html
import io
import json
import quopri
import re
import traceback
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import paradigm_trio as pt
from paradigm_trio._redact import MIN_API_KEY_LENGTH, Redactor
from paradigm_trio.cli._batchfile import result_record, write_record

MESSAGES = [{"role": "user", "content": "Hi"}]
SPECIAL = "/+=\"\\%&<'"
printable = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
keys = st.lists(
    st.one_of(st.sampled_from(SPECIAL), printable), min_size=MIN_API_KEY_LENGTH, max_size=40
).map("".join)


# --------------------------------------------------------------------------- echoes


def _json_char(ch: str, how: int) -> str:
    """One character inside a JSON string: escaped as usual, ``\\/``, or ``\\u`` (any case)."""
    if how == 0:
        return json.dumps(ch)[1:-1]
    if how == 1:
        return "\\/" if ch == "/" else json.dumps(ch)[1:-1]
    digits = f"{ord(ch):04x}"
    if how == 3:
        digits = "".join(d.upper() if i % 2 else d for i, d in enumerate(digits))
    return "\\u" + (digits.upper() if how == 4 else digits)


def _percent_char(ch: str, how: int) -> str:
    quoted = urllib.parse.quote(ch, safe="")
    if how == 0:
        return quoted
    if how == 1:
        return quoted.lower() if quoted.startswith("%") else quoted
    return f"%{ord(ch):02X}" if how == 2 else f"%{ord(ch):02x}"


@st.composite
def echoes(draw: st.DrawFn, key: str) -> tuple[str, bool]:
    """A server's echo of ``key``, and whether it is JSON-escaped (for a JSON string)."""
    kind = draw(st.sampled_from(["raw", "json", "percent", "html", "base64", "nested", "mime"]))
    hows = draw(st.lists(st.integers(0, 4), min_size=len(key), max_size=len(key)))
    if kind == "nested":
        return draw(nested_echoes(key, hows)), False
    if kind == "mime":
        # base64.encodebytes breaks its lines every 76 characters: anywhere in the key's part.
        prefix = draw(st.binary(max_size=60)) + draw(st.sampled_from([b"", b"Bearer "]))
        echo = base64.encodebytes(prefix + key.encode()).decode()
        return (echo.replace("\n", "\r\n") if draw(st.booleans()) else echo), False
    if kind == "json":
        return "".join(_json_char(c, h) for c, h in zip(key, hows, strict=True)), True
    if kind == "percent":
        return "".join(_percent_char(c, h % 4) for c, h in zip(key, hows, strict=True)), False
    if kind == "html":
        return html.escape(key), False
    if kind == "base64":
        prefix = draw(st.sampled_from([b"", b"Bearer ", b"x", b'{"a": "']))
        encode = draw(st.sampled_from([base64.b64encode, base64.urlsafe_b64encode]))
        return encode(prefix + key.encode()).decode(), False
    return key, False


def _nested_char(ch: str, how: int, level: int) -> str:
    """One character percent-encoded ``level`` + 1 times, in quoted-printable or octal."""
    if how <= 1:
        quoted = _percent_char(ch, how + 2)
        return quoted.replace("%", "%" + "25" * level, 1)
    if how == 2:
        return f"={ord(ch):02X}"
    if how == 3:
        return f"\\{ord(ch):03o}"
    return ch if ch.isalnum() else f"={ord(ch):02x}"


@st.composite
def nested_echoes(draw: st.DrawFn, key: str, hows: list[int]) -> str:
    """The key in a nested encoding, after a prefix whose last escape ends with a digit."""
    level = draw(st.integers(0, 3))
    prefix = draw(st.sampled_from(["", "Bearer%20", "Bearer%2520", "%252520", "=20", "\\040"]))
    family = draw(st.sampled_from(["percent", "qp", "octal", "mixed"]))
    if family == "percent":
        hows = [h % 2 for h in hows]
    elif family == "qp":
        return prefix + quopri.encodestring(key.encode()).decode().replace("=\n", "")
    elif family == "octal":
        hows = [3] * len(hows)
    return prefix + "".join(_nested_char(c, h, level) for c, h in zip(key, hows, strict=True))


def forms(key: str) -> set[str]:
    """The key in the encodings a leak would show it in (also as seen in a repr or JSON)."""
    quoted = urllib.parse.quote(key, safe="")
    base = {
        key,
        json.dumps(key)[1:-1],
        json.dumps(key)[1:-1].replace("/", "\\/"),
        "".join(f"\\u{ord(c):04x}" for c in key),
        "".join(f"\\u{ord(c):04X}" for c in key),
        quoted,
        re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quoted),
        html.escape(key),
        base64.b64encode(key.encode()).decode(),
        base64.b64encode(b"Bearer " + key.encode()).decode(),
        base64.urlsafe_b64encode(key.encode()).decode(),
        urllib.parse.quote(quoted, safe=""),
        "".join(f"\\{ord(c):03o}" for c in key),
        "".join(f"={ord(c):02X}" for c in key),
        quopri.encodestring(key.encode()).decode(),
    }
    return {v for form in base for v in (form, json.dumps(form)[1:-1], repr(form)[1:-1])}


# --------------------------------------------------------------------------- the server


SCENARIOS = ["status_json", "status_text", "headers", "invalid_2xx", "stream_error"]


def responder(scenario: str, status: int, echo: str, escaped: bool) -> Callable[..., Any]:
    """A MockTransport handler: the server's answer, echoing ``echo``."""
    in_json = echo if escaped else json.dumps(echo)[1:-1]
    envelope = (
        '{"error": {"message": "Incorrect API key provided: Bearer ' + in_json + '", '
        '"param": "' + in_json + '", "code": "invalid_api_key"}}'
    )

    def handler(request: httpx2.Request) -> httpx2.Response:
        if scenario == "status_json":
            return httpx2.Response(status, text=envelope, headers={"retry-after": "0"})
        if scenario == "status_text":
            return httpx2.Response(status, text=f"Authorization: Bearer {echo}\n")
        if scenario == "headers":
            headers = {
                "x-echo": f"Bearer {echo}",
                "x-request-id": f"req {echo}",
                "x-ratelimit-remaining-requests": echo,
                "retry-after": "0",
            }
            return httpx2.Response(status, headers=headers, text="no")
        if scenario == "invalid_2xx":
            return httpx2.Response(200, text=envelope.replace('"error"', '"echo"'))
        data = b"event: error\ndata: " + envelope.encode() + b"\n\n"
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=data)

    return handler


async def outputs(key: str, handler: Callable[..., Any]) -> str:
    """Everything a user can see after a plain request, a stream and a batch of each."""
    events: list[pt.Event] = []
    parts: list[str] = []
    retry = pt.RetryPolicy(attempts=2, initial_delay=0, jitter=0)
    client = pt.Client(
        api_key=key,
        base_url="http://test/api/v2",
        transport=httpx2.MockTransport(handler),
        retry=retry,
        on_event=events.append,
    )
    errors: list[BaseException] = []
    async with client:
        try:
            await client.chat(MESSAGES)
        except pt.APIError as exc:
            errors.append(exc)
        try:
            async with client.chat_stream(MESSAGES) as stream:
                async for _ in stream:
                    pass
        except pt.APIError as exc:
            errors.append(exc)
        for stream in (False, True):
            requests = [pt.ChatRequest(messages=MESSAGES, custom_id=f"c{i}") for i in range(2)]
            results = await client.chat_batch(requests, stream=stream)
            parts.append(repr(results))
            out = io.BytesIO()
            for r in results:
                assert r.error is not None
                errors.append(r.error)
                assert r.custom_id is not None
                write_record(out, result_record(r.custom_id, None, r.error, r.attempts, 0.0))
            parts.append(out.getvalue().decode())
        parts.append(repr(client.statistics()))
    assert len(errors) == 6
    for err in errors:
        parts += [str(err), repr(err), *traceback.format_exception(err)]
        assert isinstance(err, pt.APIError)
        parts += [repr(err.body), repr(err.attempts), repr(err.request_id)]
        parts += [repr(getattr(err, a, None)) for a in ("headers", "raw", "code", "param")]
    parts.append(repr(events))
    return "\n".join(parts)


@pytest.mark.anyio
@given(keys, st.data(), st.sampled_from(SCENARIOS), st.sampled_from([401, 429, 500]))
async def test_the_key_never_reaches_any_output(
    key: str, data: st.DataObject, scenario: str, status: int
) -> None:
    echo, escaped = data.draw(echoes(key), label="echo")
    leaked = forms(key) | {echo}
    # Outputs of the same exchange without an echo must not hold these by chance.
    baseline = await outputs(key, responder(scenario, status, "NOKEY", False))
    assume(not any(f in baseline for f in leaked))
    shown = await outputs(key, responder(scenario, status, echo, escaped))
    assert [f for f in leaked if f in shown] == []


# --------------------------------------------------------------------------- no corruption

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
separators = st.sampled_from([" ", "\n", '"', "'", "=", ": ", "(", ")", ", ", "/"])


@given(keys, texts, texts, separators, separators)
def test_redaction_removes_the_key_and_nothing_else(
    key: str, before: str, after: str, left: str, right: str
) -> None:
    redactor = Redactor(key)
    head, tail = before + left, right + after
    text = head + key + tail
    # The key stands apart (separators around it), once, in text that holds no other
    # echo of it and no URL (whose password would be masked).
    assume(redactor.text(head) == head and redactor.text(tail) == tail)
    assume(sum(text.startswith(key, i) for i in range(len(text))) == 1)
    assume("://" not in text)
    assert redactor.text(text) == head + "***" + tail


pieces = st.lists(
    st.one_of(
        texts, separators, st.sampled_from(["https://me:pa55@host/", "@", "y" * 400, " " * 400])
    ),
    max_size=30,
)


@given(keys, pieces, st.data(), st.integers(0, 400))
def test_clipping_shows_what_redacting_the_whole_text_shows(
    key: str, parts: list[str], data: st.DataObject, limit: int
) -> None:
    # Echoes of the key among other text, cut anywhere: no echo is ever shown in part.
    for _ in range(data.draw(st.integers(0, 6), label="echoes")):
        echo, _escaped = data.draw(echoes(key), label="echo")
        parts.insert(data.draw(st.integers(0, len(parts)), label="at"), f" {echo} ")
    text = "".join(parts)
    redactor = Redactor(key)
    assert redactor.clip(text, limit) == redactor.text(text)[:limit]
