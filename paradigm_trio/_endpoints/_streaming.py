"""A live streamed chat completion: :class:`ChatStream`, chunks handed to a caller as they
arrive.

Its attempts run on the one send path (``_endpoint.Sender``) and the attempt engine
(``_attempts``), so they obey the same deadlines, leases, retry rules and bookkeeping as
:meth:`Client.chat <paradigm_trio.Client.chat>`.  Its attempt is "open the stream and read
up to the first chunk" (:meth:`Sender.open <._endpoint.Sender.open>`); the engine keeps
the lease while the caller reads.  A break after the first chunk asks the engine for
another attempt (``Call.resume``), whose reader carries on the broken one less what was
delivered (``_resume``: replayed, or continued through the endpoint's ``follow_up``);
with ``restart=None`` it is final (the caller has seen part of an answer).

A stream read whole (a batch item with ``stream=True``) hands nothing out until the end:
:meth:`Sender.stream <._endpoint.Sender.stream>`, whose attempt is "read the whole
stream", so a stream broken midway is an ordinary attempt failure, retried per the policy.

One response's bytes become chunks in ``_chunks`` (:class:`StreamReader`: no retry, no
bookkeeping), which parses them with ``_sse`` (no I/O at all).
"""

from __future__ import annotations

import enum
import math
from types import TracebackType
from typing import Final, Self

import trio

from .._attempt_failure import AttemptFailure
from .._engine._attempts import Attempting, Call, Plan
from .._errors import APIError
from .._events import Attempt
from ._chat import ChatEndpoint
from ._chunks import StreamReader
from ._completion import ChatCompletion, ChatCompletionChunk
from ._endpoint import Sender
from ._models import ChatRequest
from ._resume import RESTARTS, Restart, Resume

__all__ = ["ChatStream"]

_NOT_RETRIED: Final = "not retried: the stream had already delivered chunks to the caller"
"""A streamed answer that does not match ``output=`` is final: it was handed out."""

# --------------------------------------------------------------------------- ChatStream


class _State(enum.Enum):
    NEW = 1
    OPENING = 2
    STREAMING = 3
    FINISHED = 4  # the whole answer arrived
    FAILED = 5
    CLOSED = 6  # left before the end


_MOVES: Final = {
    _State.NEW: {_State.OPENING},
    _State.OPENING: {_State.STREAMING, _State.FAILED, _State.CLOSED},
    _State.STREAMING: {_State.FINISHED, _State.FAILED, _State.CLOSED},
}
"""The legal moves of a :class:`ChatStream` (applied only by ``ChatStream._move``)."""


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
    * **Iterating** waits for the next chunk.  ``Timeouts.read`` bounds the silence while
      waiting for each chunk (``APITimeoutError`` with ``which="stream"``).  A stream that
      breaks after its first chunk (a cut, a malformed chunk, an error event, silence, a
      stall) is resumed when the policy allows another attempt (:attr:`restart`): the
      step waits for it, as for an attempt before the first chunk (the slot given back
      during the wait), and goes on with the chunk that follows the last one handed out.
      Otherwise the failure is raised from ``async for``, and what arrived is never
      reported as a complete answer.
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
        restart: how a break after the first chunk is resumed: ``"replay"`` (the request
            sent again, its answer checked against what was delivered and trimmed to
            what follows; a different answer raises the break, never spliced),
            ``"continue"`` (the delivered text continued by the server, vLLM's
            ``continue_final_message``), or ``None`` (never: the break is raised).
    """

    def __init__(
        self,
        sender: Sender,
        chat: ChatEndpoint,
        request: ChatRequest,
        plan: Plan,
        *,
        restart: Restart | None = "replay",
        include_usage: bool = True,
    ) -> None:
        if restart not in RESTARTS:
            raise ValueError(f"restart must be 'replay', 'continue' or None, got {restart!r}")
        self.request = request
        self.restart: Restart | None = restart
        self._sender = sender
        self._chat = chat
        self._plan = plan
        self._include_usage = include_usage
        # (an InvalidRequestError here: nothing is sent)
        self._ex = sender.prepare_stream(chat, request, plan, include_usage)
        self._call: Call = sender.engine.call(plan)
        self._state = _State.NEW
        self._reader: StreamReader | None = None
        self._completion: ChatCompletion | None = None
        self._attempt = 0  # the number of the attempt that is streaming

    def _move(self, state: _State) -> None:
        if state not in _MOVES.get(self._state, ()):
            raise RuntimeError(f"a ChatStream cannot go from {self._state.name} to {state.name}")
        self._state = state

    # ------------------------------------------------------------------ public surface

    def __repr__(self) -> str:
        return (
            f"<ChatStream {self._state.name.lower()} custom_id={self.request.custom_id!r} "
            f"chunks={self.chunks_received} characters={len(self.text)}>"
        )

    @property
    def request_id(self) -> str | None:
        """The server's ``x-request-id`` of the attempt that is streaming, if any."""
        return self._reader.request_id if self._reader is not None else None

    @property
    def completion(self) -> ChatCompletion:
        """The assembled :class:`~paradigm_trio.ChatCompletion`, once the stream has ended.

        Raises:
            RuntimeError: the stream has not been read to its end (``[DONE]``, or the end
                of the body once every choice has finished).
        """
        if self._completion is None:
            raise RuntimeError(
                "the stream has not been read to its end: iterate it completely "
                f"before reading .completion (state: {self._state.name.lower()})"
            )
        return self._completion

    @property
    def text(self) -> str:
        """The content received so far (complete only once the stream has ended).

        It can be ahead of the chunks ``async for`` has handed out: every chunk that has
        arrived is parsed, and one read often holds many.  To act on what your loop has
        seen, add up the deltas yourself.
        """
        return self._reader.text if self._reader is not None else ""

    @property
    def chunks_received(self) -> int:
        """Chunks received so far."""
        return self._reader.chunks if self._reader is not None else 0

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        """The attempts made so far, oldest first (the current one once it is over)."""
        return tuple(self._call.history)

    async def __aenter__(self) -> Self:
        if self._state is not _State.NEW:
            raise RuntimeError("a ChatStream can be entered only once")
        self._move(_State.OPENING)
        sender, chat, plan, ex = self._sender, self._chat, self._plan, self._ex

        async def attempt(current: Attempting) -> StreamReader:
            self._attempt = current.number
            return await sender.open(chat, ex, plan, current)

        try:
            self._reader = await self._call.run(attempt, hold=True)
        except BaseException as exc:
            self._move(_State.FAILED if isinstance(exc, APIError) else _State.CLOSED)
            raise
        self._move(_State.STREAMING)
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
        if self._state is _State.STREAMING:
            self._move(_State.CLOSED)
            try:
                if self._reader is not None:
                    await self._reader.close()
            finally:
                self._call.abandon()
        else:
            await trio.lowlevel.checkpoint()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if self._state is _State.NEW:
            raise RuntimeError("enter the stream first: `async with client.chat_stream(...)`")
        if self._state is _State.CLOSED:
            raise RuntimeError("this stream is closed")
        reader = self._reader
        if self._state is not _State.STREAMING or reader is None:  # FINISHED or FAILED
            raise StopAsyncIteration
        if not reader.queue and not reader.done:
            while True:  # (a resumed stream drops the chunks it had delivered)
                reader = await self._read_more(reader)
                if reader.queue or reader.done:
                    break
        else:
            await trio.lowlevel.checkpoint()
        if reader.queue:
            return reader.queue.popleft()
        await self._succeed(reader)
        raise StopAsyncIteration

    # ------------------------------------------------------------------ after the first chunk

    async def _read_more(self, reader: StreamReader) -> StreamReader:
        """Wait for the next chunk (or the end), under the inactivity timeout; a break
        resumes the stream (:attr:`restart`) when the engine allows another attempt.
        Returns the reader that carries on (a new one after a resume)."""
        call = self._call
        read = self._plan.timeouts.read
        silence = trio.current_time() + read if read is not None else math.inf
        try:
            with trio.move_on_at(min(silence, call.deadline)) as scope:
                await reader.next_chunk()
            if scope.cancelled_caught:
                if silence > call.deadline:
                    raise AttemptFailure(call.deadline_error(), "timeout", final=True)
                raise reader.silent(read)
        except AttemptFailure as failure:
            if self.restart is not None and not failure.final:
                return await self._resume(reader, failure)
            self._move(_State.FAILED)
            try:
                await reader.close()
            finally:
                # (resumed: the engine's note, or the reason it diverged, says why not)
                error = call.fail(failure, _NOT_RETRIED if self.restart is None else None)
            raise error from error.__cause__  # the transport's exception, if any
        return reader

    async def _resume(self, reader: StreamReader, failure: AttemptFailure) -> StreamReader:
        """Resume the broken stream as the engine decides (another attempt, or the error):
        the next attempt sends the request again (``"replay"``) or the delivered text to
        continue (``"continue"``, through the endpoint's ``follow_up``), and its reader
        carries on this one, less what was delivered."""
        assert self.restart is not None
        sender, chat, plan = self._sender, self._chat, self._plan
        follow_up = chat.follow_up(self.request, stream=True)
        error, last = failure.error, reader

        async def attempt(current: Attempting) -> StreamReader:
            nonlocal last
            self._attempt = current.number
            resume = Resume(self.restart or "replay", last, error)
            failure.resume = resume
            again = follow_up(failure) if follow_up is not None else None
            if again is not None:
                self._ex = sender.prepare_stream(chat, again, plan, self._include_usage)
            try:
                return await sender.open(chat, self._ex, plan, current, resume)
            finally:
                last = resume.successor or last  # (what a failed attempt took over)

        try:
            await reader.close()
            self._reader = reader = await self._call.resume(failure, attempt)
        except BaseException as exc:
            self._move(_State.FAILED if isinstance(exc, APIError) else _State.CLOSED)
            raise
        return reader

    async def _succeed(self, reader: StreamReader) -> None:
        try:
            completion = self._chat.stream_parser(self.request)(reader)
        except AttemptFailure as failure:
            self._move(_State.FAILED)
            try:
                await reader.close()
            finally:
                error = self._call.fail(failure, _NOT_RETRIED)
            raise error from None
        self._completion = completion
        self._move(_State.FINISHED)
        try:
            if reader.no_done:  # (inside the try: a hook that raises must not leak the lease)
                plan = self._plan
                self._sender.engine.ledger.stream_ended_without_done(
                    plan.custom_id, plan.key, self._attempt, reader.broken
                )
            await reader.drain()
        finally:
            try:
                await reader.close()
            finally:
                self._call.succeed(completion, completion.usage)
