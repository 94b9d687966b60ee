"""The key never leaks, and redaction removes the key and nothing else.

A server that echoes the ``Authorization`` header (in its body, a header or an event
stream) may write the key in any encoding: as is, JSON-escaped (``\\/``, ``\\uXXXX``),
percent-encoded, HTML-escaped, in base64.  None of these may reach an error (its str,
repr, message, body, raw text, headers, request id, attempts, notes, traceback), an event
or the statistics.  Redaction must leave other text alone, so a key that cannot be told
apart from ordinary words is refused; and a ``base_url`` password is masked everywhere.
"""

from __future__ import annotations

import base64
import html
import json
import quopri
import re
import traceback
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

import paradigm_trio as pt
from paradigm_trio._http._failures import RAW_LIMIT
from paradigm_trio._redact import MIN_API_KEY_LENGTH, Redactor

from .helpers import MESSAGES, Events, Script, fixed, make_client, ok, status

# A key with every character servers escape: / (PHP's \/), " and \ (JSON), + and =
# (base64, percent-encoding), < & ' (HTML).
KEY = "sk-Ab/Cd+eF=gH\"iJ\\kL<mN&oP'q"
PASSWORD = "s3cret-Pa55word"


def _u(ch: str, upper: bool) -> str:
    text = f"\\u{ord(ch):04x}"
    return text.upper().replace("\\U", "\\u") if upper else text


def encodings(key: str) -> dict[str, str]:
    """Every form in which a server may echo ``key``."""
    quoted = urllib.parse.quote(key, safe="")
    return {
        "raw": key,
        "json": json.dumps(key)[1:-1],
        "json_slash": json.dumps(key)[1:-1].replace("/", "\\/"),
        "unicode_lower": "".join(_u(c, False) for c in key),
        "unicode_upper": "".join(_u(c, True) for c in key),
        "unicode_mixed": "".join(
            _u(c, i % 4 == 1) if i % 2 else json.dumps(c)[1:-1] for i, c in enumerate(key)
        ),
        "percent_upper": quoted,
        "percent_lower": re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quoted),
        "percent_all": "".join(f"%{ord(c):02x}" for c in key),
        "html": html.escape(key),
        "html_numeric": "".join(f"&#{ord(c)};" for c in key),
        "base64_bearer": base64.b64encode(f"Bearer {key}".encode()).decode(),
        "base64_key": base64.b64encode(key.encode()).decode(),
        "base64url_blob": base64.urlsafe_b64encode(b'{"kk": "' + key.encode()).decode(),
        "json_in_json": json.dumps(json.dumps(key))[1:-1],
        "percent_of_percent": urllib.parse.quote(quoted, safe=""),
        "percent_thrice_all": "".join(f"%2525{ord(c):02X}" for c in key),
        "quoted_printable": quopri.encodestring(key.encode()).decode(),
        "quoted_printable_all": "".join(f"={ord(c):02X}" for c in key),
        "octal": "".join(f"\\{ord(c):03o}" for c in key),
        # MIME base64: a line break (every 76 characters) falls inside the key's part.
        "base64_mime": base64.encodebytes(b"x" * 40 + b"Bearer " + key.encode()).decode(),
    }


JSON_FAMILY = ("json", "json_slash", "unicode_lower", "unicode_upper", "unicode_mixed")
HEADER_SAFE = (
    "raw", "percent_upper", "percent_lower", "base64_bearer", "base64_key",
    "percent_of_percent", "percent_thrice_all", "quoted_printable_all", "octal",
)  # fmt: skip


def leaks(text: str, key: str = KEY) -> list[str]:
    """The encodings of ``key`` found in ``text`` (also as they look inside a repr or JSON)."""
    found = []
    for name, form in encodings(key).items():
        shown = {form, json.dumps(form)[1:-1], repr(form)[1:-1]}
        if any(s in text for s in shown):
            found.append(name)
    return found


def outputs(err: BaseException, *extra: object) -> str:
    """Everything a user can see of an error (and of ``extra`` objects, by repr)."""
    parts = [str(err), repr(err), *traceback.format_exception(err)]
    parts += [str(n) for n in getattr(err, "__notes__", [])]
    if isinstance(err, pt.APIError):
        parts += [err.message, repr(err.body), repr(err.attempts), str(err.request_id)]
    if isinstance(err, pt.APIStatusError):
        parts += [repr(dict(err.headers)), str(err.code), str(err.type), str(err.param)]
    if isinstance(err, pt.APIResponseValidationError):
        parts.append(err.raw)
    parts += [repr(e) for e in extra]
    return "\n".join(parts)


async def run_chat(
    respond: Callable[[httpx2.Request], httpx2.Response], *, key: str = KEY, **kwargs: Any
) -> tuple[BaseException, Events, pt.ClientStatistics]:
    events = Events()
    kwargs.setdefault("retry", fixed(attempts=2))
    async with make_client(Script(default=respond), api_key=key, on_event=events, **kwargs) as c:
        with pytest.raises(pt.APIError) as info:
            await c.chat(MESSAGES)
        stats = c.statistics()
    return info.value, events, stats


def _json_body(echo: str) -> str:
    """An OpenAI error envelope, written by hand, with ``echo`` inside a JSON string."""
    return (
        '{"error": {"message": "Incorrect API key provided: Bearer ' + echo + '", '
        '"type": "invalid_request_error", "param": "' + echo + '", "code": "invalid_api_key"}}'
    )


# ============================================================================ bodies


@pytest.mark.anyio
@pytest.mark.parametrize("encoding", JSON_FAMILY)
async def test_a_key_json_escaped_in_an_error_body_never_leaks(encoding: str) -> None:
    text = _json_body(encodings(KEY)[encoding])
    err, events, stats = await run_chat(lambda r: status(500, text=text))
    assert leaks(outputs(err, list(events), stats)) == []
    assert isinstance(err.body, dict)  # still parsed: the envelope's fields are kept
    assert err.body["error"]["code"] == "invalid_api_key"
    assert err.body["error"]["message"] == "Incorrect API key provided: Bearer ***"


@pytest.mark.anyio
@pytest.mark.parametrize("encoding", sorted(encodings(KEY)))
async def test_a_key_in_any_encoding_in_a_text_body_never_leaks(encoding: str) -> None:
    text = f"Traceback: Authorization: Bearer {encodings(KEY)[encoding]}\n"
    err, events, stats = await run_chat(lambda r: status(502, text=text))
    assert leaks(outputs(err, list(events), stats)) == []
    assert "Traceback: Authorization: Bearer " in err.message


@pytest.mark.anyio
@pytest.mark.parametrize("encoding", sorted(set(encodings(KEY)) - set(JSON_FAMILY)))
async def test_a_key_in_any_encoding_in_a_json_string_never_leaks(encoding: str) -> None:
    echo = encodings(KEY)[encoding]
    body = {"error": {"message": f"bad key {echo}", "code": 401}, "echo": {echo: [echo, 1]}}
    err, events, stats = await run_chat(lambda r: status(401, body))
    assert leaks(outputs(err, list(events), stats)) == []
    assert isinstance(err, pt.AuthenticationError)


@pytest.mark.anyio
async def test_a_key_in_a_2xx_body_that_is_not_a_completion_never_leaks() -> None:
    for echo in (_json_body(encodings(KEY)["json_slash"]), f"<html>{KEY}</html>"):
        err, events, _ = await run_chat(lambda r, echo=echo: httpx2.Response(200, text=echo))
        assert isinstance(err, pt.APIResponseValidationError)
        assert leaks(outputs(err, list(events))) == []
        assert err.raw  # what the server sent, redacted, is still there to read


@pytest.mark.anyio
async def test_a_key_cut_by_the_raw_limit_is_not_shown_in_part() -> None:
    text = "x" * (RAW_LIMIT - 10) + " " + KEY + " and more"
    err, _, _ = await run_chat(lambda r: status(500, text=text))
    assert isinstance(err, pt.APIStatusError)
    assert KEY[:8] not in outputs(err)
    assert len(str(err.body)) == RAW_LIMIT


@pytest.mark.anyio
async def test_a_key_cut_by_a_message_limit_is_not_shown_in_part() -> None:
    # The /models parser keeps 300 characters of a bad entry in its message: the key
    # must not be cut in half there (a half key is a leak too).
    entry = {"pad": "p" * 240, "key": KEY, "more": "q" * 100}
    body = {"object": "list", "data": [entry]}
    script = Script(default=lambda r: httpx2.Response(200, json=body))
    async with make_client(script, api_key=KEY) as c:
        with pytest.raises(pt.APIResponseValidationError) as info:
            await c.models()
    assert KEY[:6] not in outputs(info.value)
    assert "has no 'id'" in info.value.message


@pytest.mark.anyio
async def test_a_deeply_nested_error_body_is_kept_as_redacted_text() -> None:
    text = "[" * 100_000 + json.dumps(KEY) + "]" * 100_000
    err, _, _ = await run_chat(lambda r: status(400, text=text))
    assert isinstance(err, pt.BadRequestError)
    assert isinstance(err.body, str)
    assert err.body.startswith("[[[")
    assert leaks(outputs(err)) == []


def test_redacting_parsed_json_of_any_depth() -> None:
    deep: Any = KEY
    for _ in range(50_000):
        deep = [deep]
    redacted = Redactor(KEY).value(deep)
    for _ in range(50_000):
        assert isinstance(redacted, list)
        redacted = redacted[0]
    assert redacted == "***"


# ============================================================================ headers


@pytest.mark.anyio
@pytest.mark.parametrize("encoding", HEADER_SAFE)
async def test_a_key_echoed_in_response_headers_never_leaks(encoding: str) -> None:
    echo = encodings(KEY)[encoding]
    headers = {
        "x-echo-authorization": f"Bearer {echo}",
        "x-request-id": f"req {echo}",
        "x-ratelimit-remaining-requests": echo,
        "retry-after": "0",
    }
    err, events, stats = await run_chat(lambda r: status(429, headers=headers))
    assert isinstance(err, pt.RateLimitError)
    assert leaks(outputs(err, list(events), stats)) == []
    assert err.headers["x-echo-authorization"].startswith("Bearer ")
    assert "***" in err.headers["x-echo-authorization"]  # (in base64: the key's characters)
    assert err.request_id is not None
    assert "***" in err.request_id
    assert [a.request_id for a in err.attempts] == [err.request_id] * 2
    assert "***" in events.of(pt.RateLimited)[0].headers["x-ratelimit-remaining-requests"]


@pytest.mark.anyio
async def test_a_request_id_echoing_the_key_is_redacted_on_success_too() -> None:
    events = Events()
    script = Script(ok(headers={"x-request-id": f"req {KEY}"}))
    async with make_client(script, api_key=KEY, on_event=events) as client:
        completion = await client.chat(MESSAGES)
    assert completion.request_id == "req ***"
    assert leaks(repr(list(events))) == []


# ============================================================================ streams


def _sse(*events: bytes, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(
        200,
        headers={"content-type": "text/event-stream", **(headers or {})},
        content=b"".join(events),
    )


def _chunk(text: str) -> bytes:
    body = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": text}}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def read_stream(client: pt.Client) -> None:
    async with client.chat_stream(MESSAGES, retry=fixed(attempts=1)) as stream:
        async for _ in stream:
            pass


STREAM_ECHOES: dict[str, Callable[[], httpx2.Response]] = {
    "error_event_json": lambda: _sse(
        _chunk("a"),
        b"event: error\ndata: " + _json_body(encodings(KEY)["unicode_mixed"]).encode() + b"\n\n",
    ),
    "error_in_data": lambda: _sse(
        _chunk("a"),
        b'data: {"error": {"message": "Bearer '
        + encodings(KEY)["json_slash"].encode()
        + b'", "code": 401}}\n\n',
    ),
    "error_event_text": lambda: _sse(
        b"event: error\ndata: Authorization: Bearer "
        + encodings(KEY)["percent_lower"].encode()
        + b"\n\n"
    ),
    "not_json": lambda: _sse(_chunk("a"), b"data: {oops " + KEY.encode() + b"\n\n"),
    "not_a_chunk": lambda: _sse(
        b'data: {"choices": "' + encodings(KEY)["json"].encode() + b'"}\n\n'
    ),
    "status": lambda: status(401, text=_json_body(encodings(KEY)["unicode_upper"])),
    "request_id": lambda: _sse(
        _chunk("a"), b"data: {broken\n\n", headers={"x-request-id": f"r {KEY}"}
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", sorted(STREAM_ECHOES))
async def test_a_key_echoed_in_a_stream_never_leaks(case: str) -> None:
    events = Events()
    respond = STREAM_ECHOES[case]
    client = make_client(Script(default=lambda r: respond()), api_key=KEY, on_event=events)
    async with client:
        with pytest.raises(pt.APIError) as info:
            await read_stream(client)
        results = await client.chat_batch([MESSAGES], stream=True, retry=fixed(attempts=2))
    assert results[0].error is not None
    assert leaks(outputs(info.value, list(events), results)) == []
    assert leaks(outputs(results[0].error)) == []


@pytest.mark.anyio
async def test_a_key_cut_by_the_stream_event_quote_limit_is_not_shown_in_part() -> None:
    data = b"data: {" + b"x" * 190 + b" " + KEY.encode() + b"\n\n"
    async with make_client(Script(default=lambda r: _sse(data)), api_key=KEY) as client:
        with pytest.raises(pt.APIResponseValidationError) as info:
            await read_stream(client)
    assert "is not JSON" in info.value.message
    assert KEY[:6] not in outputs(info.value)


# ============================================================================ tracebacks


@pytest.mark.anyio
async def test_a_transport_error_chain_holding_the_key_is_redacted_in_tracebacks() -> None:
    def respond(request: httpx2.Request) -> httpx2.Response:
        auth = request.headers["authorization"]
        try:
            raise OSError(104, f"reset by proxy that logged {auth}")
        except OSError as exc:
            raise httpx2.ConnectError(f"proxy said: Authorization: {auth}") from exc

    err, events, _ = await run_chat(respond)
    assert isinstance(err, pt.APIConnectionError)
    assert leaks(outputs(err, list(events))) == []
    shown = "".join(traceback.format_exception(err))
    assert "proxy said: Authorization: Bearer ***" in shown  # the chain is still there
    assert "reset by proxy that logged Bearer ***" in shown


@pytest.mark.anyio
async def test_a_cause_that_cannot_be_cleaned_is_left_out_of_the_traceback() -> None:
    class Stubborn(Exception):
        def __str__(self) -> str:
            return f"I always say {KEY}"

    def respond(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadError("read failed") from Stubborn()

    err, _, _ = await run_chat(respond)
    assert leaks(outputs(err)) == []
    assert err.__cause__ is None
    assert "read failed" in str(err)


# ============================================================================ no corruption


@pytest.mark.anyio
async def test_a_key_inside_a_longer_word_is_left_alone() -> None:
    # Plain substring replacement turned "rate_limit_exceeded" into "rate_***" here.
    body = {"error": {"message": "Rate limit exceeded", "code": "rate_limit_exceeded"}}
    err, _, _ = await run_chat(
        lambda r: status(429, body, headers={"retry-after": "0"}), key="limit_exceeded"
    )
    assert isinstance(err, pt.RateLimitError)
    assert err.code == "rate_limit_exceeded"
    assert err.message == "Error code: 429 - Rate limit exceeded"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-word-key1 here", "key *** here"),
        ("xsk-word-key1 sk-word-key1x sk-word-key1_ -sk-word-key1", None),
        ('"sk-word-key1".', '"***".'),
        ("Bearer%20sk-word-key1&x=1", "Bearer%20***&x=1"),
        ('{"a": "\\u0020sk-word-key1\\nsk-word-key1"}', '{"a": "\\u0020***\\n***"}'),
        # After any escaped character, even one whose escape ends with a digit.
        ("Bearer%2520sk-word-key1 %252520sk-word-key1", "Bearer%2520*** %252520***"),
        ("Bearer=20sk-word-key1 \\040sk-word-key1", "Bearer=20*** \\040***"),
        ("x0sk-word-key1 %25sk-word-key1x", None),
        ("https://alice:p@ss-Secr3t@host/x", "https://alice:***@host/x"),
        (
            "see https://u:pw@host/ and https://h:80/p@x",
            "see https://u:***@host/ and https://h:80/p@x",
        ),
    ],
)
def test_redaction_removes_the_key_and_nothing_else(text: str, expected: str | None) -> None:
    assert Redactor("sk-word-key1").text(text) == (text if expected is None else expected)


def test_a_key_that_starts_or_ends_with_punctuation_is_matched_next_to_letters() -> None:
    # The boundary rule keeps the key from matching *inside* a run of word characters;
    # a key whose own edge is punctuation already stands apart.
    assert Redactor("/abc-def-gh=").text("host/abc-def-gh=x") == "host***x"


def test_redacting_parsed_json_covers_keys_strings_and_numbers() -> None:
    redactor = Redactor("12345678901")
    value = {"12345678901": [12345678901, "a 12345678901", 2.5, True, None]}
    assert redactor.value(value) == {"***": ["***", "a ***", 2.5, True, None]}


# ============================================================================ key checks


@pytest.mark.parametrize("key", ["k", "limit", "abcdefg"])
def test_a_short_key_is_refused_with_the_minimum(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pt.ConfigurationError, match=f"at least {MIN_API_KEY_LENGTH}") as info:
        pt.Client(api_key=key)
    assert "api_key=" in str(info.value)
    assert f" {key} " not in f" {info.value} "
    assert repr(key) not in str(info.value)
    monkeypatch.setenv("PARADIGM_API_KEY", key)
    with pytest.raises(pt.ConfigurationError, match="PARADIGM_API_KEY"):
        pt.Client()


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("sk-t\u00e9st-key-12", "non-ASCII"),
        ("\u201csk-test-key-12\u201d", "non-ASCII"),
        ("sk-test\tkey-12", "whitespace"),
        ("sk-test key-12", "whitespace"),
        ("sk-test-key-12\u00a0", "whitespace"),
        ("sk-test\x7fkey-12", "control"),
    ],
)
def test_a_key_that_cannot_be_sent_in_a_header_is_refused(key: str, says: str) -> None:
    with pytest.raises(pt.ConfigurationError, match=says) as info:
        pt.Client(api_key=key)
    assert "sk-t" not in str(info.value)
    assert "key-12" not in str(info.value)


def test_keys_of_the_minimum_length_and_the_mock_key_are_accepted() -> None:
    for key in ("abcdefgh", "test-key", "mock-key-not-secret", "a/b+c=d%"):
        assert "***" in repr(pt.Client(api_key=key))


# ============================================================================ base_url


def test_the_base_url_password_is_masked_in_the_repr_and_the_property() -> None:
    client = pt.Client(api_key="sk-test-key", base_url=f"https://me:{PASSWORD}@host/api/v2")
    assert PASSWORD not in repr(client)
    assert client.base_url == "https://me:***@host/api/v2"
    assert "me:***@host" in repr(client)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://h:6379/0?password=s3cret", "redis://h:6379/0?password=***"),
        ("redis://h/0?db=1&PassWord=s3cret&x=1", "redis://h/0?db=1&PassWord=***&x=1"),
        ("rediss://u:p4ss@h/0?token=s3cret#f", "rediss://u:***@h/0?token=***#f"),
        ("'unix:///tmp/r.sock?pwd=s3cret'", "'unix:///tmp/r.sock?pwd=***'"),
        ("https://h/v2?api_key=s3cret x://y?key=s3cret", "https://h/v2?api_key=*** x://y?key=***"),
        ("https://h/v2?monkey=1&keys=2", "https://h/v2?monkey=1&keys=2"),  # other names
        ("no url?password=kept", "no url?password=kept"),  # no ``://``: no URL
    ],
)
def test_mask_credentials_masks_query_string_credentials(text: str, shown: str) -> None:
    assert pt.mask_credentials(text) == shown


def test_a_redis_quota_masks_a_query_string_password() -> None:
    quota = pt.RedisQuota("redis://127.0.0.1:1/0?password=s3cret&db=0", name="n")
    assert quota.display_url == "redis://127.0.0.1:1/0?password=***&db=0"
    assert "s3cret" not in repr(quota)
    with pytest.raises(ValueError, match=r"password=\*\*\*") as info:
        pt.RedisQuota("http://127.0.0.1:1/0?password=s3cret", name="n")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        f"ftp://me:{PASSWORD}@host/api",
        f"https://me:{PASSWORD}/x@host/api",
        f"me:{PASSWORD}@host",
        f"https://me:{PASSWORD}@/api",
    ],
)
def test_a_bad_base_url_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(pt.ConfigurationError) as info:
        pt.Client(api_key="sk-test-key", base_url=url)
    assert PASSWORD[:6] not in str(info.value)
    assert "***" in str(info.value)


@pytest.mark.anyio
async def test_the_base_url_password_is_masked_in_errors_and_events() -> None:
    def respond(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(f"cannot connect to {request.url}")

    base = f"http://me:{PASSWORD}@test/api/v2"
    err, events, _ = await run_chat(respond, base_url=base)
    shown = outputs(err, list(events))
    assert PASSWORD not in shown
    assert "me:***@test" in str(err)
