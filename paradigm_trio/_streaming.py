"""Streamed chat completions over Server-Sent Events: :class:`ChatStream`.

:meth:`Client.chat_stream <paradigm_trio.Client.chat_stream>` returns a :class:`ChatStream`,
an async context manager and async iterator of :class:`ChatCompletionChunk`::

    async with client.chat_stream(messages) as stream:
        async for chunk in stream:
            print(chunk.delta, end="")
    print(stream.completion.usage)

The SSE parser is our own (:class:`SSEDecoder`): it works on bytes, so events may be split
anywhere, even inside a multi-byte UTF-8 character, and it knows when the stream ended in
the middle of an event, which ``httpx2.EventSource`` silently drops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import math
import re
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import httpx2
import trio

from ._client import (
    _connection_failure,
    _Failure,
    _idempotency_key,
    _one_line,
    _timeout_failure,
)
from ._config import RetryPolicy, Timeouts
from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    RequestCancelled,
    TimeoutKind,
    status_error_class,
)
from ._events import Attempt, AttemptFailed, AttemptStarted, RetryScheduled
from ._models import ChatCompletion, ChatRequest, Choice, Message, Usage, _parse_usage
from ._ratelimit import SendMark

if TYPE_CHECKING:
    from ._batch import BatchControl
    from ._client import Client

__all__ = [
    "ChatCompletionChunk",
    "ChatStream",
    "IncompleteStreamError",
    "SSEDecodeError",
    "SSEDecoder",
    "ServerSentEvent",
    "stream_completion",
]

DEFAULT_MAX_EVENT_SIZE: Final = 16 * 1024 * 1024
"""The largest event (or unterminated line) the decoder buffers, in bytes."""

DRAIN_GRACE: Final = 1.0
"""Seconds allowed, after ``[DONE]``, for the rest of the body (so the connection is reused)."""

_DONE: Final = "[DONE]"
_EOL = re.compile(rb"\r\n|\r|\n")
_BOM: Final = "\ufeff"
_BOM_BYTES: Final = _BOM.encode()


# --------------------------------------------------------------------------- SSE parsing


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched server-sent event."""

    event: str = "message"
    data: str = ""
    id: str = ""
    retry: int | None = None


class SSEDecodeError(ValueError):
    """The event stream cannot be parsed (an event larger than the limit)."""


class SSEDecoder:
    """An incremental parser of ``text/event-stream`` bytes (the WHATWG algorithm).

    Feed it the body in pieces of any size with :meth:`feed`; it returns the events each
    piece completes.  Lines end with CRLF, LF or CR (a CRLF split between two pieces counts
    once); lines are decoded as UTF-8 only once complete, so a piece may end inside a
    multi-byte character.  A leading byte order mark is ignored, ``:`` lines are comments,
    ``data:`` lines of one event are joined with ``\\n``.  An event is dispatched at a blank
    line when it has a ``data`` line or an ``event`` name (the standard asks for data only;
    an ``event: error`` without data is still worth reporting).

    At the end of the body, :attr:`mid_event` tells whether the stream stopped inside an
    event (bytes of an unterminated line, or fields not yet followed by a blank line): a
    truncated stream, whose last event the standard says to drop.
    """

    __slots__ = (
        "_buffer",
        "_data",
        "_event",
        "_event_size",
        "_in_event",
        "_last_id",
        "_max_event_size",
        "_retry",
        "_skip_lf",
        "_started",
        "bytes_received",
    )

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._max_event_size = max_event_size
        self._buffer = bytearray()
        self._skip_lf = False
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._last_id = ""
        self._retry: int | None = None
        self._in_event = False
        self._event_size = 0
        self.bytes_received = 0
        """Bytes fed so far."""

    @property
    def mid_event(self) -> bool:
        """Whether the bytes fed so far stop inside an event (or an unterminated line)."""
        if not self._started and _BOM_BYTES.startswith(self._buffer):
            return False  # nothing, or (part of) the byte order mark
        return bool(self._buffer) or self._in_event

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Parse the next piece of the body; return the events it completes, in order.

        Raises:
            SSEDecodeError: an event or line exceeds ``max_event_size`` bytes.
        """
        self.bytes_received += len(data)
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == 0x0A:
                data = data[1:]
        if not data:
            return []
        buffer = self._buffer
        buffer += data
        events: list[ServerSentEvent] = []
        start = 0
        for match in _EOL.finditer(buffer):
            self._line(bytes(buffer[start : match.start()]), events)
            start = match.end()
        if start:
            # A lone CR at the very end may be the first half of a CRLF.
            self._skip_lf = start == len(buffer) and buffer[-1] == 0x0D
            del buffer[:start]
        if len(buffer) + self._event_size > self._max_event_size:
            raise SSEDecodeError(
                f"a server-sent event exceeds the {self._max_event_size}-byte limit"
            )
        return events

    def _line(self, raw: bytes, events: list[ServerSentEvent]) -> None:
        line = raw.decode("utf-8", "replace")
        if not self._started:
            self._started = True
            if line.startswith(_BOM):
                line = line[1:]
        if not line:
            if self._data or self._event:
                events.append(
                    ServerSentEvent(
                        self._event or "message", "\n".join(self._data), self._last_id, self._retry
                    )
                )
            self._event = ""
            self._data = []
            self._retry = None
            self._in_event = False
            self._event_size = 0
            return
        if line[0] == ":":
            return
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        self._in_event = True
        self._event_size += len(raw) + 1
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)


# --------------------------------------------------------------------------- chunks


@dataclass(frozen=True, slots=True)
class ChatCompletionChunk:
    """One piece of a streamed chat completion (an OpenAI ``chat.completion.chunk``).

    Only the first choice is modelled (``n`` is always 1 here); ``raw`` holds the whole
    JSON, tool-call deltas included.

    Attributes:
        id, model, created: as in the chunk.
        delta: the text this chunk adds (``""`` when it adds none).
        role: the role, on the first chunk of a message (usually ``"assistant"``).
        finish_reason: why the answer ended, on its last content chunk.
        usage: the token usage, on the final usage chunk (``include_usage=True``);
            ``None`` on every other chunk.
        raw: the chunk's JSON.
    """

    id: str
    model: str
    created: int
    delta: str
    role: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def from_json(cls, data: object, request_id: str | None = None) -> ChatCompletionChunk:
        """Parse a chunk; raises :class:`APIResponseValidationError` if it is not one."""
        try:
            return cls._parse(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise APIResponseValidationError(
                f"a stream event is not a valid chat completion chunk: {exc}",
                request_id=request_id,
                body=data,
            ) from exc

    @classmethod
    def _parse(cls, data: object) -> ChatCompletionChunk:
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        choices = data.get("choices") or []
        if not isinstance(choices, list):
            raise TypeError("'choices' must be a list")
        content: object = None
        role: object = None
        finish: object = None
        if choices:
            choice = next(
                (c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), choices[0]
            )
            if not isinstance(choice, dict):
                raise TypeError("a choice must be an object")
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise TypeError("'delta' must be an object")
            content = delta.get("content")
            role = delta.get("role")
            finish = choice.get("finish_reason")
            if content is not None and not isinstance(content, str):
                raise TypeError("'delta.content' must be a string or null")
        raw_usage = data.get("usage")
        return cls(
            id=str(data.get("id") or ""),
            model=str(data.get("model") or ""),
            created=int(data.get("created") or 0),
            delta=content if isinstance(content, str) else "",
            role=None if role is None else str(role),
            finish_reason=None if finish is None else str(finish),
            usage=_parse_usage(raw_usage) if isinstance(raw_usage, dict) else None,
            raw=data,
        )


class IncompleteStreamError(APIConnectionError):
    """The stream ended or broke before ``[DONE]``: what arrived is not a complete answer.

    Attributes:
        chunks: chunks received before it broke.
        characters: characters of content received.
        text: the content received (a partial answer).
    """

    def __init__(
        self, message: str, *, chunks: int = 0, characters: int = 0, text: str = "", **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.chunks = chunks
        self.characters = characters
        self.text = text


class _Broken(Exception):
    """Internal: the stream failed; carries the failure for the retry decision."""

    def __init__(self, failure: _Failure) -> None:
        super().__init__(failure.error.message)
        self.failure = failure


class _State(enum.Enum):
    NEW = 1
    OPENING = 2
    STREAMING = 3
    FINISHED = 4  # the whole answer arrived
    FAILED = 5
    CLOSED = 6  # left before the end


# --------------------------------------------------------------------------- the stream


class ChatStream:
    """A streamed chat completion: an async context manager and async iterator of chunks.

    Made by :meth:`Client.chat_stream <paradigm_trio.Client.chat_stream>`.  Enter it once;
    iterate it once.

    Where things can block or be cancelled:

    * **Entering** the block waits for a concurrency slot, sends the request and waits for the
      *first chunk*, retrying per the :class:`~paradigm_trio.RetryPolicy` (same
      ``Idempotency-Key``) when an attempt fails before then: connection errors, retryable
      statuses, ``Timeouts.first_token``, a stream that breaks before its first chunk.  Between
      attempts it sleeps without holding the slot.
    * **Iterating** waits for the next chunk.  Once the first chunk has been received nothing
      is retried: a failure is raised from ``async for``, and what arrived is never reported as
      a complete answer.  ``Timeouts.read`` bounds the silence while waiting for each chunk
      (``APITimeoutError`` with ``which="stream"``).
    * **Leaving** the block closes the HTTP response at once (the server sees the disconnect)
      and gives the slot back.  Leaving early (``break``, an exception, cancellation) counts the
      request as cancelled in :meth:`Client.statistics <paradigm_trio.Client.statistics>`.

    Timeouts are cancel scopes on trio's clock.  Before the first chunk the earliest of
    ``Timeouts.first_token`` (``Timeouts.read`` when ``first_token`` is ``None``),
    ``Timeouts.attempt`` and the request's deadline (``Timeouts.total``) applies; after it,
    ``Timeouts.read`` per chunk and the request's deadline.  ``Timeouts.attempt`` does not cap a
    stream once it has started, so that a long answer is not cut for being long.

    Attributes:
        request: the :class:`~paradigm_trio.ChatRequest` streamed.
        request_id: the server's ``x-request-id`` of the current (last) attempt, if any.
    """

    def __init__(
        self,
        client: Client,
        request: ChatRequest,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        include_usage: bool = True,
        deadline: float = math.inf,
        control: BatchControl | None = None,
        history: list[Attempt] | None = None,
    ) -> None:
        self._client = client
        self.request = request
        self.request_id: str | None = None
        self._retry = retry or client.retry
        self._timeouts = timeouts or client.timeouts
        self._caller_deadline = deadline
        self._total_deadline = math.inf
        self._deadline = deadline
        self._control = control
        self._tokens = request.estimated_tokens()
        self._mark: SendMark | None = None
        self._key = _idempotency_key(request.custom_id)
        body = request.to_body(client.model)
        body["stream"] = True
        if include_usage:
            options = body.get("stream_options")
            body["stream_options"] = {
                **(options if isinstance(options, Mapping) else {}),
                "include_usage": True,
            }
        self._body = json.dumps(body, separators=(",", ":")).encode()
        self._headers = dict(client._headers)
        self._headers["Accept"] = "text/event-stream"
        self._headers["Idempotency-Key"] = self._key
        # The HTTP layer's read timeout is off: first_token and read are cancel scopes here.
        self._http_timeout = client._http_timeout(self._timeouts.replace(read=None))
        self._state = _State.NEW
        self._history: list[Attempt] = history if history is not None else []
        self._reported = False
        self._holding = False
        self._counted = False
        self._response: httpx2.Response | None = None
        self._bytes: AsyncGenerator[bytes, None] | None = None
        self._start = 0.0
        self._reset_attempt(0.0)

    def _reset_attempt(self, now: float) -> None:
        self._attempt_started = now
        self._status: int | None = None
        self._decoder = SSEDecoder()
        self._queue: deque[ChatCompletionChunk] = deque()
        self._done = False
        self._chunks = 0
        self._parts: list[str] = []
        self._characters = 0
        self._id = ""
        self._model = ""
        self._created = 0
        self._role = "assistant"
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._completion: ChatCompletion | None = None

    # ------------------------------------------------------------------ public surface

    def __repr__(self) -> str:
        return (
            f"<ChatStream {self._state.name.lower()} custom_id={self.request.custom_id!r} "
            f"chunks={self._chunks} characters={self._characters}>"
        )

    @property
    def completion(self) -> ChatCompletion:
        """The assembled :class:`~paradigm_trio.ChatCompletion`, once the stream has ended.

        Raises:
            RuntimeError: the stream has not been read to its end (``[DONE]``).
        """
        if self._completion is None:
            raise RuntimeError(
                "the stream has not been read to its end: iterate it completely "
                f"before reading .completion (state: {self._state.name.lower()})"
            )
        return self._completion

    @property
    def text(self) -> str:
        """The content received so far (complete only once the stream has ended)."""
        return "".join(self._parts)

    @property
    def chunks_received(self) -> int:
        """Chunks received so far (by the current attempt)."""
        return self._chunks

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        """The attempts made so far, oldest first (the current one once it is over)."""
        return tuple(self._history)

    async def __aenter__(self) -> Self:
        if self._state is not _State.NEW:
            raise RuntimeError("a ChatStream can be entered only once")
        self._state = _State.OPENING
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the response and give the concurrency slot back.  Idempotent.

        Closing a stream that has not ended counts the request as cancelled.
        """
        if self._state in (_State.OPENING, _State.STREAMING):
            self._state = _State.CLOSED
            try:
                await self._release()
            finally:
                self._report(None)
        else:
            await self._release()
            await trio.lowlevel.checkpoint()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if self._state is _State.NEW:
            raise RuntimeError("enter the stream first: `async with client.chat_stream(...)`")
        if self._state is _State.CLOSED:
            raise RuntimeError("this stream is closed")
        if self._state is not _State.STREAMING:  # FINISHED or FAILED
            raise StopAsyncIteration
        if not self._queue and not self._done:
            await self._read_more()
        else:
            await trio.lowlevel.checkpoint()
        if self._queue:
            return self._queue.popleft()
        await self._succeed()
        raise StopAsyncIteration

    # ------------------------------------------------------------------ opening (retried)

    async def _open(self) -> None:
        client = self._client
        client._check_open()
        retry, timeouts = self._retry, self._timeouts
        control = self._control
        self._start = start = trio.current_time()
        if timeouts.total is not None:
            self._total_deadline = start + timeouts.total
        self._deadline = min(self._caller_deadline, self._total_deadline)
        custom_id, key = self.request.custom_id, self._key
        client._started += 1
        in_progress: float | None = None
        try:
            with trio.move_on_at(self._deadline):
                while True:
                    number = len(self._history) + 1
                    if control is not None:
                        await control.before_attempt()
                    in_progress = trio.current_time()
                    failure = await self._attempt(number)
                    if control is not None:
                        control.after_attempt(failure.cause if failure else None, self._status)
                    if failure is None:
                        self._state = _State.STREAMING
                        return
                    now = trio.current_time()
                    delay, stop_reason = client._retry_delay(
                        failure, number, retry, now, self._deadline
                    )
                    if delay is not None and control is not None:
                        stop_reason = control.spend_retry()
                        if stop_reason is not None:
                            delay = None
                    record = Attempt(
                        number,
                        in_progress,
                        now - in_progress,
                        self._status,
                        failure.cause,
                        _one_line(failure.error),
                        delay,
                        self.request_id,
                    )
                    in_progress = None
                    self._history.append(record)
                    client._emit(AttemptFailed(custom_id, key, record, delay is not None))
                    if delay is None:
                        if stop_reason:
                            failure.error.add_note(stop_reason)
                        raise failure.error
                    client._retries += 1
                    client._retries_by_cause[failure.cause] = (
                        client._retries_by_cause.get(failure.cause, 0) + 1
                    )
                    client._emit(
                        RetryScheduled(
                            custom_id,
                            key,
                            number,
                            failure.cause,
                            delay,
                            failure.retry_after is not None,
                        )
                    )
                    await trio.sleep(delay)
            # Only reached when the deadline fired while waiting for a slot or sleeping.
            now = trio.current_time()
            if in_progress is not None:
                self._history.append(
                    Attempt(
                        len(self._history) + 1,
                        in_progress,
                        now - in_progress,
                        None,
                        "timeout",
                        "interrupted by the deadline",
                    )
                )
            raise self._deadline_error()
        except APIError as exc:
            self._state = _State.FAILED
            self._report(exc)
            raise
        except BaseException:
            self._state = _State.CLOSED
            self._report(None)
            raise

    async def _attempt(self, number: int) -> _Failure | None:
        """One attempt, up to its first chunk.  On success it keeps the slot and response."""
        client = self._client
        await client._limiter.acquire_on_behalf_of(self)
        self._holding = True
        try:
            self._mark = await client._rates.acquire(self._tokens)
        except BaseException:
            await self._release()
            raise
        client._in_flight += 1
        self._counted = True
        client._attempts += 1
        ok = False
        try:
            now = trio.current_time()
            self._reset_attempt(now)
            self.request_id = None
            client._emit(AttemptStarted(self.request.custom_id, self._key, number, now))
            deadline, which = self._first_deadline(now)
            with trio.move_on_at(deadline):
                try:
                    await self._start_stream()
                except _Broken as broken:
                    return broken.failure
                ok = True
                return None
            return self._first_timeout(which)
        finally:
            if not ok:
                await self._release()

    def _first_deadline(self, start: float) -> tuple[float, TimeoutKind]:
        t = self._timeouts
        options: list[tuple[float, TimeoutKind]] = []
        if t.first_token is not None:
            options.append((start + t.first_token, "first_token"))
        elif t.read is not None:
            options.append((start + t.read, "stream"))
        if t.attempt is not None:
            options.append((start + t.attempt, "attempt"))
        options.append((self._deadline, "total"))
        return min(options, key=lambda option: option[0])

    def _first_timeout(self, which: TimeoutKind) -> _Failure:
        t = self._timeouts
        if which == "total":
            return _Failure(self._deadline_error(), "timeout", False)
        if which == "first_token":
            limit = f"Timeouts.first_token={t.first_token:g}s"
        elif which == "attempt":
            limit = f"Timeouts.attempt={t.attempt:g}s"
        else:
            limit = f"Timeouts.read={t.read:g}s (Timeouts.first_token is None)"
        got = (
            f" (status {self._status}, {self._decoder.bytes_received} bytes received)"
            if self._status is not None
            else " (no response)"
        )
        error = APITimeoutError(f"no chunk within {limit}{got}", which=which)
        return _Failure(error, "timeout", self._retry.retry_connection_errors)

    def _deadline_error(self) -> APIError:
        """``Timeouts.total`` (``APITimeoutError``) or the caller's deadline (cancelled)."""
        attempts = f"{len(self._history)} attempt(s)"
        if self._total_deadline <= self._caller_deadline:
            return APITimeoutError(
                f"request timed out: Timeouts.total={self._timeouts.total:g}s passed after "
                f"{attempts}; {self._progress()} received",
                which="total",
            )
        return RequestCancelled(
            f"cancelled: the deadline passed after {attempts}; {self._progress()} received"
            if self._history or self._status is not None
            else "cancelled: the deadline passed before it was sent",
            reason="deadline",
            sent=bool(self._history) or self._status is not None,
        )

    async def _start_stream(self) -> None:
        """Send the request and read up to the first chunk; raise :class:`_Broken` on failure."""
        client, retry = self._client, self._retry
        try:
            http_request = client._http.build_request(
                "POST",
                client._base_url + "/chat/completions",
                content=self._body,
                headers=self._headers,
                timeout=self._http_timeout,
            )
            response = await client._http.send(http_request, stream=True)
        except httpx2.TimeoutException as exc:
            raise _Broken(_timeout_failure(exc, retry)) from None
        except httpx2.TransportError as exc:
            raise _Broken(_connection_failure(exc, retry, client._redact)) from None
        except httpx2.HTTPError as exc:
            raise _Broken(
                self._invalid(f"could not read the response: {client._redact(str(exc))}")
            ) from None
        self._response = response
        self._status = response.status_code
        self.request_id = response.headers.get("x-request-id")
        if not 200 <= response.status_code < 300:
            try:
                await response.aread()
            except httpx2.HTTPError as exc:
                raise _Broken(self._broken(exc)) from None
            _, failure, _, _ = client._handle_response(
                response,
                retry,
                self._key,
                self.request.custom_id,
                ChatCompletion.from_json,
                self._mark,
            )
            assert failure is not None
            raise _Broken(failure)
        client._adaptive.on_headers(response.headers, self._mark)
        content_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type != "text/event-stream":
            raise _Broken(
                self._invalid(
                    f"expected a text/event-stream response, got {content_type or 'none'!r} "
                    f"(status {response.status_code})"
                )
            )
        self._bytes = response.aiter_bytes()
        while not self._queue and not self._done:
            await self._receive()

    # ------------------------------------------------------------------ reading

    async def _receive(self) -> None:
        """Read one piece of the body and parse it; raise :class:`_Broken` on failure."""
        assert self._bytes is not None
        try:
            data = await self._bytes.__anext__()
        except StopAsyncIteration:
            self._bytes = None
            if not self._done:
                raise _Broken(self._incomplete()) from None
            return
        except httpx2.HTTPError as exc:
            self._bytes = None
            raise _Broken(self._broken(exc)) from None
        try:
            events = self._decoder.feed(data)
        except SSEDecodeError as exc:
            raise _Broken(self._invalid(str(exc))) from None
        for event in events:
            self._on_event(event)

    async def _read_more(self) -> None:
        """Wait for the next chunk (or the end), under the inactivity timeout."""
        now = trio.current_time()
        read = self._timeouts.read
        silence = now + read if read is not None else math.inf
        which: TimeoutKind = "stream" if silence <= self._deadline else "total"
        try:
            with trio.move_on_at(min(silence, self._deadline)) as scope:
                while not self._queue and not self._done:
                    await self._receive()
            if scope.cancelled_caught:
                if which == "total":
                    raise _Broken(_Failure(self._deadline_error(), "timeout", False))
                error = APITimeoutError(
                    f"the stream went silent for Timeouts.read={read:g}s after {self._progress()}",
                    which="stream",
                )
                raise _Broken(_Failure(error, "timeout", False))
        except _Broken as broken:
            await self._fail(broken.failure)

    def _on_event(self, event: ServerSentEvent) -> None:
        if self._done:
            return  # nothing counts after [DONE]
        if event.event == "error":
            payload: object = event.data
            with contextlib.suppress(ValueError):
                payload = json.loads(event.data)
            raise _Broken(self._error_event(payload))
        if event.event != "message":
            return  # e.g. "ping": not part of the answer
        data = event.data.strip()
        if data == _DONE:
            self._done = True
            return
        if not data:
            return
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise _Broken(
                self._invalid(f"a stream event is not JSON ({exc}): {data[:200]!r}")
            ) from None
        if isinstance(payload, dict) and payload.get("error") is not None:
            raise _Broken(self._error_event(payload))
        try:
            chunk = ChatCompletionChunk.from_json(payload, self.request_id)
        except APIResponseValidationError as err:
            err.status_code = self._status
            err.raw = self._client._redact(data[:65536])
            failure = _Failure(err, "invalid_response", self._retry.retry_invalid_responses)
            raise _Broken(failure) from None
        self._absorb(chunk)
        self._queue.append(chunk)

    def _absorb(self, chunk: ChatCompletionChunk) -> None:
        self._chunks += 1
        self._id = self._id or chunk.id
        self._model = self._model or chunk.model
        self._created = self._created or chunk.created
        if chunk.role:
            self._role = chunk.role
        if chunk.delta:
            self._parts.append(chunk.delta)
            self._characters += len(chunk.delta)
        if chunk.finish_reason is not None:
            self._finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self._usage = chunk.usage

    # ------------------------------------------------------------------ failures

    def _progress(self) -> str:
        return (
            f"{self._chunks} chunk(s), {self._characters} character(s) of content "
            f"({self._decoder.bytes_received} bytes)"
        )

    def _incomplete(self) -> _Failure:
        if self._decoder.mid_event:
            what = "the stream was cut in the middle of an event"
        else:
            what = "the stream ended without [DONE]"
        return self._incomplete_failure(f"{what} after {self._progress()}")

    def _broken(self, exc: httpx2.HTTPError) -> _Failure:
        detail = self._client._redact(str(exc)) or type(exc).__name__
        failure = self._incomplete_failure(
            f"the connection broke after {self._progress()}: {type(exc).__name__}: {detail}"
        )
        failure.error.__cause__ = exc
        return failure

    def _incomplete_failure(self, message: str) -> _Failure:
        error = IncompleteStreamError(
            message,
            chunks=self._chunks,
            characters=self._characters,
            text=self.text,
            status_code=self._status,
            request_id=self.request_id,
        )
        return _Failure(error, "connection", self._retry.retry_connection_errors)

    def _invalid(self, message: str) -> _Failure:
        error = APIResponseValidationError(
            self._client._redact(message), status_code=self._status, request_id=self.request_id
        )
        return _Failure(error, "invalid_response", self._retry.retry_invalid_responses)

    def _error_event(self, payload: object) -> _Failure:
        """An error the server reported in the stream (``event: error`` or ``{"error": ...}``)."""
        err: object = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(err, dict):
            err = payload if isinstance(payload, dict) else {"message": err or payload}
        message = err.get("message")
        text = self._client._redact(
            message if isinstance(message, str) and message else json.dumps(payload)[:500]
        )
        status = next(
            (s for s in map(_as_status, (err.get("status_code"), err.get("status"))) if s),
            None,
        ) or _as_status(err.get("code"))
        progress = f" (after {self._progress()})"
        if status is None:
            error = APIError(
                f"the server reported an error in the stream: {text}{progress}",
                status_code=self._status,
                request_id=self.request_id,
                body=payload,
            )
            return _Failure(error, "stream_error", self._retry.is_retryable_status(500))
        response = self._response
        cls = status_error_class(status)
        status_error: APIStatusError = cls(
            f"Error code: {status} - {text}{progress}",
            status_code=status,
            request_id=self.request_id,
            body=payload,
            headers={}
            if response is None
            else {k: v for k, v in response.headers.items() if k.lower() != "set-cookie"},
            code=_as_text(err.get("code")),
            type=_as_text(err.get("type")),
            param=_as_text(err.get("param")),
        )
        return _Failure(status_error, str(status), self._retry.is_retryable_status(status))

    async def _fail(self, failure: _Failure) -> None:
        """A failure after the first chunk: never retried; record it, close, raise."""
        client = self._client
        now = trio.current_time()
        record = Attempt(
            len(self._history) + 1,
            self._attempt_started,
            now - self._attempt_started,
            self._status,
            failure.cause,
            _one_line(failure.error),
            None,
            self.request_id,
        )
        self._history.append(record)
        self._state = _State.FAILED
        try:
            client._emit(AttemptFailed(self.request.custom_id, self._key, record, False))
            failure.error.add_note(
                "not retried: the stream had already delivered chunks to the caller"
            )
        finally:
            try:
                await self._release()
            finally:
                self._report(failure.error)
        raise failure.error

    # ------------------------------------------------------------------ the end

    async def _succeed(self) -> None:
        client = self._client
        now = trio.current_time()
        self._history.append(
            Attempt(
                len(self._history) + 1,
                self._attempt_started,
                now - self._attempt_started,
                self._status,
                request_id=self.request_id,
            )
        )
        usage = self._usage or Usage()
        message = {"role": self._role, "content": self.text}
        raw: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish_reason}],
        }
        if self._usage is not None:
            raw["usage"] = {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            }
        self._completion = ChatCompletion(
            id=self._id,
            model=self._model,
            created=self._created,
            choices=(Choice(0, Message(self._role, self.text, message), self._finish_reason),),
            usage=usage,
            request_id=self.request_id,
            raw=raw,
        )
        self._state = _State.FINISHED
        if len(self._history) == 1:
            client._adaptive.on_clean_success()
        if usage.total_tokens:
            client._rates.reconcile(self._tokens, usage.total_tokens)
        client._prompt_tokens += usage.prompt_tokens
        client._completion_tokens += usage.completion_tokens
        try:
            # Read what follows [DONE] (usually nothing) so the connection can be reused.
            with trio.move_on_after(DRAIN_GRACE):
                while self._bytes is not None:
                    try:
                        await self._bytes.__anext__()
                    except (StopAsyncIteration, httpx2.HTTPError):
                        self._bytes = None
        finally:
            try:
                await self._release()
            finally:
                self._report(self._completion)

    async def _release(self) -> None:
        """Close the response (at once, shielded) and give the slot back."""
        response, self._response = self._response, None
        parts, self._bytes = self._bytes, None
        try:
            if response is not None:
                with trio.CancelScope(shield=True):
                    if parts is not None:
                        await _unwind(parts)
                    await response.aclose()
        finally:
            if self._counted:
                self._counted = False
                self._client._in_flight -= 1
            if self._holding:
                self._holding = False
                self._client._limiter.release_on_behalf_of(self)

    def _report(self, outcome: ChatCompletion | APIError | None) -> None:
        """Count the logical request once: success, failure, or cancelled (``None``)."""
        if self._reported:
            return
        self._reported = True
        if isinstance(outcome, APIError):
            outcome.attempts = tuple(self._history)
            outcome.custom_id = self.request.custom_id
        self._client._finish(
            outcome,
            self.request.custom_id,
            self._key,
            len(self._history),
            trio.current_time() - self._start,
        )


async def _unwind(parts: AsyncGenerator[bytes, None]) -> None:
    """Finish a body iterator that may be suspended mid-body, leaving no generator behind.

    ``aclose()`` is not enough: httpx2 wraps httpcore2's body generator in another one that
    does not close it, so it would be garbage collected unfinished (a ``ResourceWarning``
    from trio).  Resuming the chain inside a cancelled scope makes the innermost read raise
    ``Cancelled``, which unwinds every generator of the chain; httpcore2 then closes the
    connection (the server sees the disconnect).
    """
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            while True:
                await parts.__anext__()  # buffered data comes out without a checkpoint
        except StopAsyncIteration:
            pass
        except Exception:  # a broken body: we are closing it anyway
            pass
    await parts.aclose()


def _as_status(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and 400 <= value < 600:
        return value
    return None


def _as_text(value: object) -> str | None:
    return None if value is None else str(value)


async def stream_completion(
    client: Client,
    request: ChatRequest,
    *,
    retry: RetryPolicy | None = None,
    timeouts: Timeouts | None = None,
    deadline: float = math.inf,
    control: BatchControl | None = None,
    history: list[Attempt] | None = None,
) -> ChatCompletion:
    """Stream ``request`` to its end and return the assembled completion.

    What a batch uses for ``stream=True`` (same arguments as ``Client._send``): the answer
    is the same as :meth:`Client.send`'s, but ``Timeouts.first_token`` and the inactivity
    timeout apply.  Since nothing is handed to a caller chunk by chunk here, a stream that
    breaks *after* its first chunk (cut, missing ``[DONE]``, inactivity timeout, a
    retryable error event) is retried as a whole too, per the same policy and with the same
    ``Idempotency-Key``; the attempt history spans every try.
    """
    policy = retry or client.retry
    if history is None:
        history = []
    while True:
        stream = ChatStream(
            client,
            request,
            retry=retry,
            timeouts=timeouts,
            deadline=deadline,
            control=control,
            history=history,
        )
        try:
            async with stream:
                async for _ in stream:
                    pass
            return stream.completion
        except APIError as exc:
            if not stream.chunks_received or not _retryable_mid_stream(exc, policy):
                raise
            now = trio.current_time()
            number = len(history)
            reason: str | None = None
            if number >= policy.attempts:
                reason = (
                    f"gave up after {number} attempt(s) (RetryPolicy.attempts={policy.attempts})"
                )
            delay = policy.backoff(number, client._random.random())
            if reason is None and now + delay >= deadline:
                reason = "not retried: the wait would pass the request's deadline"
            if reason is None and control is not None:
                reason = control.spend_retry()
            notes = getattr(exc, "__notes__", [])
            notes[:] = [n for n in notes if "already delivered chunks" not in n]
            if reason is not None:
                exc.add_note(reason)
                raise
            # One logical request, not two: undo what the broken stream counted as a
            # finished failure, and count a retry instead.
            client._started -= 1
            client._failed -= 1
            client._retries += 1
            # Record the wait on the broken attempt, as the retry loop does for its own.
            history[-1] = dataclasses.replace(history[-1], delay=delay)
            cause = history[-1].cause or "stream_broken"
            client._retries_by_cause[cause] = client._retries_by_cause.get(cause, 0) + 1
            await trio.sleep(delay)


def _retryable_mid_stream(exc: APIError, policy: RetryPolicy) -> bool:
    if isinstance(exc, APIStatusError):
        return policy.is_retryable_status(exc.status_code)
    if isinstance(exc, IncompleteStreamError | APITimeoutError):
        return policy.retry_connection_errors
    return type(exc) is APIError  # an error event without a status: transient by nature
