"""One streamed response: its bytes in, chunks and the assembled answer out.

A :class:`StreamReader` reads the body of one attempt's ``text/event-stream`` response,
parses it with :class:`~paradigm_trio._sse.SSEDecoder`, turns events into
:class:`~paradigm_trio.ChatCompletionChunk` objects and assembles the completion.  Every
failure is an :class:`~paradigm_trio._attempt_failure.AttemptFailure` (built with the HTTP layer's
error builder); nothing here retries, counts or emits events: that is the attempt engine's
business (``_attempts``), driven by the send path (``_endpoint.Sender``).

A stream is complete at ``data: [DONE]``, or when its body ends (cleanly, or by a broken
connection: :attr:`StreamReader.broken`) after every choice it mentioned has a
``finish_reason`` (some OpenAI-compatible servers never send ``[DONE]``; the openai SDK
accepts such a stream too): then :attr:`StreamReader.no_done` is true, for the caller to
report.  A body that ends before that is an :class:`IncompleteStreamError`.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import AsyncGenerator
from typing import Final

import httpx2
import trio

from .._attempt_failure import AttemptFailure
from .._errors import APIResponseValidationError, APITimeoutError, IncompleteStreamError
from .._http._failures import RAW_LIMIT
from .._http._http import HTTP
from .._json import parse_json
from ._assembly import CompletionAssembler
from ._completion import ChatCompletion, ChatCompletionChunk
from ._endpoint import close_response
from ._pace import StallWatch
from ._resume import DIVERGED, Diverged, Resume
from ._sse import ServerSentEvent, SSEDecodeError, SSEDecoder

__all__ = ["DRAIN_GRACE", "StreamReader"]

DRAIN_GRACE: Final = 1.0
"""Seconds allowed, after ``[DONE]``, for the rest of the body (so the connection is reused)."""

_DONE: Final = "[DONE]"


class StreamReader:
    """One attempt's streamed response: its bytes in, chunks and the assembled answer out.

    Every method that fails raises :class:`AttemptFailure`; nothing here retries or counts.
    """

    def __init__(self, http: HTTP, response: httpx2.Response, resume: Resume | None = None) -> None:
        self._http = http
        self.response = response
        self.status = response.status_code
        self.request_id = http.request_id(response)
        self._bytes: AsyncGenerator[bytes, None] | None = response.aiter_bytes()
        self.decoder = SSEDecoder()
        self.queue: deque[ChatCompletionChunk] = deque()
        self.done = False
        self.no_done = False
        """Whether the stream ended complete, but without ``[DONE]``."""
        self.broken: str | None = None
        """What broke the connection, when it broke after every choice had finished."""
        self.chunks = 0
        self.characters = 0
        self.assembler = CompletionAssembler()
        self._choices: set[object] = set()  # choice indices seen in the chunks
        self._finished: set[object] = set()  # ... and those that had a finish_reason
        self.stall: StallWatch | None = None
        """The stream's idle limit from its pace, once its first chunk is in (set by
        ``Sender.open``); ``None``: only the caller's read timeout applies."""
        self.received = 0
        """Chunks parsed, those a resume drops included (each ends a wait for one)."""
        self.resume = resume
        """For the attempt that resumes a broken stream: what it delivered.  This reader
        then carries on the broken one's (its assembler, counters, undelivered chunks) and
        trims each chunk with :meth:`Resume.trim`."""
        if resume is not None:
            resume.successor = self
            old = resume.reader
            self.assembler, self.queue = old.assembler, old.queue
            self.chunks, self.characters = old.chunks, old.characters
            # (whether this stream is complete is judged on its own chunks, untrimmed)

    @property
    def bytes_received(self) -> int:
        """The bytes of the body read so far."""
        return self.decoder.bytes_received

    @property
    def text(self) -> str:
        """The first choice's content so far."""
        return self.assembler.text(0)

    def progress(self) -> str:
        return (
            f"{self.chunks} chunk(s), {self.characters} character(s) of content "
            f"({self.decoder.bytes_received} bytes)"
        )

    # ------------------------------------------------------------------ reading

    async def receive(self) -> None:
        """Read one piece of the body and parse it."""
        if self._bytes is None:
            raise self._incomplete(f"the stream ended without [DONE] after {self.progress()}")
        try:
            data = await self._bytes.__anext__()
        except StopAsyncIteration:
            self._bytes = None
            self._ended()
            return
        except httpx2.HTTPError as exc:
            self._bytes = None
            detail = self._http.redact(str(exc)) or type(exc).__name__
            if not self.done and self._all_finished():
                # The answer is whole: what was lost is at most the usage chunk or [DONE].
                self.done = self.no_done = True
                self.broken = f"{type(exc).__name__}: {detail}"
                self._resumed_end()
                return
            failure = self._incomplete(
                f"the connection broke after {self.progress()}: {type(exc).__name__}: {detail}"
            )
            self._http.chain(failure.error, exc)
            raise failure from None
        try:
            events = self.decoder.feed(data)
        except SSEDecodeError as exc:
            raise self.invalid(str(exc)) from None
        for event in events:
            self._on_event(event)

    def _ended(self) -> None:
        """The body ended cleanly: complete at ``[DONE]`` or once every choice finished."""
        if self.done:
            return
        if self._all_finished():
            # Complete without [DONE]; a partial last event (the usage chunk, or "[DONE]"
            # without its blank line) is dropped, as the SSE standard says.
            self.done = self.no_done = True
            self._resumed_end()
            return
        if self.decoder.mid_event:
            what = "the stream was cut in the middle of an event"
        elif not self._finished:
            what = "the stream ended without [DONE] or a finish_reason"
        else:
            unfinished = ", ".join(sorted(map(str, self._choices - self._finished)))
            what = f"the stream ended without [DONE] before choice(s) {unfinished} finished"
        raise self._incomplete(f"{what} after {self.progress()}") from None

    def _all_finished(self) -> bool:
        """Whether choices were seen and every one of them had its ``finish_reason``."""
        return bool(self._choices) and self._finished >= self._choices

    async def next_chunk(self) -> None:
        """Read until a chunk is received (queued, or dropped by a :attr:`resume`) or the
        stream has ended.

        With a :attr:`stall` watch, a wait longer than the stream's pace allows fails as
        a timeout (the stream stalled), and each wait's length is given to the watch.
        """
        watch, seen = self.stall, self.received
        if watch is None or self.queue or self.done:
            while not self.queue and not self.done and self.received == seen:
                await self.receive()
            return
        start = trio.current_time()
        limit = watch.limit()
        with trio.move_on_at(math.inf if limit is None else start + limit) as scope:
            while not self.queue and not self.done and self.received == seen:
                await self.receive()
        gap = trio.current_time() - start
        if scope.cancelled_caught:
            error = APITimeoutError(
                f"{watch.describe(gap)} after {self.progress()}", which="stream"
            )
            raise AttemptFailure(error, "timeout")
        watch.observe(gap)

    async def read_to_end(self, read_timeout: float | None) -> None:
        """Read the whole stream, with at most ``read_timeout`` of silence between chunks."""
        while not self.done:
            self.queue.clear()
            with trio.move_on_after(math.inf if read_timeout is None else read_timeout) as scope:
                await self.next_chunk()
            if scope.cancelled_caught:
                raise self.silent(read_timeout)
        self.queue.clear()

    def silent(self, read: float | None) -> AttemptFailure:
        error = APITimeoutError(
            f"the stream went silent for Timeouts.read={read:g}s after {self.progress()}",
            which="stream",
        )
        return AttemptFailure(error, "timeout")

    def _on_event(self, event: ServerSentEvent) -> None:
        if self.done:
            return  # nothing counts after [DONE]
        if event.event == "error":
            payload: object = event.data
            with contextlib.suppress(ValueError):
                payload = parse_json(event.data)
            raise self._error_event(payload)
        if event.event != "message":
            return  # e.g. "ping": not part of the answer
        data = event.data.strip()
        if data == _DONE:
            self.done = True
            self._resumed_end()
            return
        if not data:
            return
        try:
            payload = parse_json(data)
        except ValueError as exc:
            shown = self._http.redactor.clip(data, 200)
            raise self.invalid(f"a stream event is not JSON ({exc}): {shown!r}") from None
        if isinstance(payload, dict) and payload.get("error") is not None:
            raise self._error_event(payload)
        self.received += 1
        if self.resume is not None and isinstance(payload, dict):
            self._track_choices(payload)
            payload = self._trimmed(payload, data)
            if payload is None:
                return
        try:
            chunk = ChatCompletionChunk.from_json(payload, self.request_id)
        except APIResponseValidationError as err:
            parse = ChatCompletionChunk.from_json
            clean = self._http.invalid_data(parse, payload, self.request_id, err)
            clean.status_code = self.status
            clean.raw = self._http.redactor.clip(data, RAW_LIMIT)
            raise AttemptFailure(clean, "invalid_response") from None
        try:
            self.assembler.add(chunk.raw)  # (a dict: from_json checked it)
        except ValueError as exc:
            raise self.invalid(f"a malformed chunk ({exc}): {data[:200]!r}") from None
        self.chunks += 1
        self.characters += len(chunk.delta)
        if self.resume is None:
            self._track_choices(payload)
        self.queue.append(chunk)

    def _track_choices(self, payload: object) -> None:
        """Note the choices a chunk mentions and those it finishes (all, not only 0)."""
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            if not isinstance(index, int | str):
                index = repr(index)
            self._choices.add(index)
            if choice.get("finish_reason") is not None:
                self._finished.add(index)

    # ------------------------------------------------------------------ resuming

    def _trimmed(self, payload: dict[str, object], data: str) -> dict[str, object] | None:
        resume = self.resume
        assert resume is not None
        try:
            return resume.trim(payload)
        except Diverged as exc:
            raise self._diverged(str(exc)) from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise self.invalid(f"a malformed chunk ({exc}): {data[:200]!r}") from None

    def _resumed_end(self) -> None:
        """The stream ended: a replay must have reproduced everything delivered."""
        if self.resume is not None:
            try:
                self.resume.finish()
            except Diverged as exc:
                raise self._diverged(str(exc)) from None

    def _diverged(self, why: str) -> AttemptFailure:
        """Not resumed: the caller gets the error that broke the stream, saying why."""
        assert self.resume is not None
        error = self.resume.error
        error.add_note(
            f"not resumed: the answer sent again differs from the one delivered ({why}); "
            "sampling is not deterministic here: set temperature=0 or a seed, or "
            "restart='continue' where the server supports it"
        )
        return AttemptFailure(error, DIVERGED, final=True)  # (never spliced, never retried)

    # ------------------------------------------------------------------ failures

    def _incomplete(self, message: str) -> AttemptFailure:
        error = IncompleteStreamError(
            message,
            chunks=self.chunks,
            characters=self.characters,
            text=self.text,
            status_code=self.status,
            request_id=self.request_id,
        )
        return AttemptFailure(error, "connection")

    def invalid(self, message: str) -> AttemptFailure:
        return self._http.invalid(message, status=self.status, request_id=self.request_id)

    def _error_event(self, payload: object) -> AttemptFailure:
        return self._http.error_event_failure(
            payload, response=self.response, suffix=f" (after {self.progress()})"
        )

    # ------------------------------------------------------------------ the end

    def completion(self) -> ChatCompletion:
        """The assembled completion (every choice, tool calls joined).

        Raises:
            AttemptFailure: the chunks do not make a valid completion (a tool call
                without its name, say): ``"invalid_response"``.
        """
        try:
            return ChatCompletion.from_json(self.assembler.raw(), self.request_id)
        except (ValueError, APIResponseValidationError) as exc:
            raise self.invalid(f"the streamed chunks do not make a completion: {exc}") from None

    async def drain(self) -> None:
        """Read what follows ``[DONE]`` (usually nothing) so the connection can be reused.

        (Nothing to read when the body has ended already, e.g. without ``[DONE]``.)
        """
        with trio.move_on_after(DRAIN_GRACE):
            while self._bytes is not None:
                try:
                    await self._bytes.__anext__()
                except (StopAsyncIteration, httpx2.HTTPError):
                    self._bytes = None

    async def close(self) -> None:
        """Close the response at once (shielded: closing must not be cancelled half-way)."""
        parts, self._bytes = self._bytes, None
        await close_response(self.response, parts)
