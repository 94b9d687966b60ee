"""The endpoint protocol: what a request kind says of itself, and the one send path.

An :class:`Endpoint` is a request kind of the API (chat completions, embeddings): how its
request is encoded, how its answer is parsed, the usage the answer reports, and what
telemetry records of both.  :class:`Sender` is the one path that sends any endpoint's
request through the attempt engine, plain or streamed; the engine sees the endpoint only
as an opaque part of the ``Plan`` (for the observers), never its types.  Adding an
endpoint is one module (its request, its answer, an ``Endpoint``) and its tests.

An endpoint whose answer can also come as Server-Sent Events is a
:class:`StreamingEndpoint`: besides the above, the body of a streamed request
(:meth:`~StreamingEndpoint.encode_stream`), the :class:`Reader` of one streamed response
(:meth:`~StreamingEndpoint.stream_reader`: its bytes in, its chunks and assembled answer
out) and the answer of a stream read to its end (:meth:`~StreamingEndpoint.stream_parser`).
``Sender`` runs its attempts: :meth:`Sender.open` (one attempt up to its first chunk,
under the first-token deadline: a live stream's, ``ChatStream``) and
:meth:`Sender.stream` (a stream read whole: a batch item with ``stream=True``).

Most requests send the same bytes on every attempt.  One whose failure changes what the
next attempt says (a re-ask that tells the model what was wrong with its tool call) has
:meth:`Endpoint.follow_up`: the request the attempt after a given failure sends.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol, TypeAlias, TypeVar

import httpx2
import trio

from .._attempt_failure import AttemptFailure
from .._config import Timeouts
from .._engine._attempts import Attempting, Engine, Plan
from .._engine._cache import CacheStore
from .._engine._dedupe import Identity
from .._engine._ledger import Tokens
from .._errors import APITimeoutError, TimeoutKind
from .._events import Attempt
from .._http._http import HTTP, Exchange, JsonAttempt
from ._pace import StallWatch

__all__ = [
    "Endpoint",
    "FollowUp",
    "Reader",
    "Request",
    "Sender",
    "Stored",
    "StreamingEndpoint",
    "close_response",
    "identity",
    "reparse",
    "stored",
    "through_cache",
]

T = TypeVar("T")
Q = TypeVar("Q", bound="Request")
Q_contra = TypeVar("Q_contra", bound="Request", contravariant=True)
A = TypeVar("A")
R = TypeVar("R", bound="Reader")


class Request(Protocol):
    """What the send path reads of any request (validated when it was made)."""

    @property
    def custom_id(self) -> str | None: ...

    @property
    def model(self) -> str | None: ...

    def estimated_tokens(self) -> int:
        """The estimate charged to the tokens-per-minute limit before the answer."""
        ...


FollowUp = Callable[[AttemptFailure], Q | None]
"""Given an attempt's failure, the request the next attempt sends (``None``: the same as
the attempt before)."""


class Endpoint(Protocol[Q_contra, A]):
    """One request kind: ``POST path`` with a JSON body, answered with JSON.

    Attributes:
        operation: what it does, as the GenAI conventions name it (``"chat"``,
            ``"embeddings"``): its spans' and metrics' ``gen_ai.operation.name``.
        path: the path under the base URL.
        model: the model of a request that names none (the client's default for it).
        token_types: the token counts its usage holds (``gen_ai.token.type``).
    """

    @property
    def operation(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def token_types(self) -> tuple[str, ...]: ...

    @property
    def idempotent(self) -> bool:
        """Whether sending a request twice does no more than sending it once (``False``:
        resent only when it cannot have reached the server; never hedged nor shared)."""
        ...

    def encode(self, request: Q_contra) -> bytes:
        """The request's body (an :class:`InvalidRequestError` here: nothing is sent)."""
        ...

    def deterministic(self, request: Q_contra) -> bool:
        """Whether equal requests get equal answers (so one answer may serve them all)."""
        ...

    def parser(self, request: Q_contra) -> Callable[[object, str | None], A]:
        """The parser of one answer to ``request`` (``APIResponseValidationError``, or an
        ``AttemptFailure`` that classifies what is wrong with it)."""
        ...

    def follow_up(self, request: Q_contra, stream: bool) -> FollowUp[Any] | None:
        """The request for the attempt after a failure, when a failure can change it
        (``None``: every attempt sends ``request`` as it is; the common case, which costs
        nothing).  ``stream``: ``request`` is streamed (a broken live stream's failure
        carries what it delivered, ``AttemptFailure.resume``)."""
        ...

    def usage(self, answer: A) -> Tokens | None:
        """The usage the answer reports (``None``: it reports none)."""
        ...

    def request_attributes(self, request: Q_contra) -> Iterator[tuple[str, Any]]:
        """Telemetry: the request's span attributes beyond the model."""
        ...

    def answer_attributes(self, answer: Any) -> Iterator[tuple[str, Any]]:
        """Telemetry: the answer's span attributes (``gen_ai.response.model``...)."""
        ...

    def content_attributes(self, request: Q_contra, answer: Any) -> Iterator[tuple[str, str]]:
        """Telemetry, opt-in only (user data): what was sent and received."""
        ...


class Reader(Protocol):
    """One attempt's streamed response, as the send path reads it (chat's:
    ``_chunks.StreamReader``).  Every method that fails raises :class:`AttemptFailure`;
    nothing here retries or counts.

    Attributes:
        status: the response's status.
        chunks: the chunks received so far (a resumed stream's included).
        stall: the stream's idle limit from its pace (``Timeouts.stall_factor``), set by
            :meth:`Sender.open` once the first chunk is in.
        no_done: the stream ended complete, but without its end marker (``[DONE]``).
        broken: what broke the connection, when it broke after the answer was whole.
    """

    status: int
    chunks: int
    stall: StallWatch | None
    no_done: bool
    broken: str | None

    @property
    def bytes_received(self) -> int:
        """The bytes of the body read so far."""
        ...

    def progress(self) -> str:
        """What has arrived so far, in a few words (for deadline errors)."""
        ...

    def invalid(self, message: str) -> AttemptFailure:
        """The failure of a response that is not what the API promises."""
        ...

    async def next_chunk(self) -> None:
        """Read until the next chunk (or the end)."""
        ...

    async def read_to_end(self, read_timeout: float | None) -> None:
        """Read the whole stream, with at most ``read_timeout`` of silence between chunks."""
        ...

    async def drain(self) -> None:
        """Read what follows the end marker, so the connection can be reused."""
        ...

    async def close(self) -> None:
        """Close the response at once (shielded: :func:`close_response`)."""
        ...


class StreamingEndpoint(Endpoint[Q_contra, A], Protocol[Q_contra, A, R]):
    """An :class:`Endpoint` whose answer can also come as Server-Sent Events (``R``: its
    :class:`Reader`).  :meth:`Sender.open` and :meth:`Sender.stream` run it."""

    def encode_stream(self, request: Q_contra, include_usage: bool = True) -> bytes:
        """The body of ``request`` streamed (``stream``, and the final usage chunk asked
        for unless ``include_usage`` is false); an :class:`InvalidRequestError` here:
        nothing is sent."""
        ...

    def stream_reader(self, http: HTTP, response: httpx2.Response, resume: Any = None) -> R:
        """The reader of one streamed response (``resume``: what a broken live stream had
        delivered, which this reader carries on)."""
        ...

    def stream_parser(self, request: Q_contra) -> Callable[[R], A]:
        """The answer of a reader read to its end (checked as :meth:`parser` checks a
        plain answer: an ``AttemptFailure`` that classifies what is wrong with it)."""
        ...


Stored: TypeAlias = tuple[Mapping[str, Any], str | None]
"""What the response cache keeps of an answer: its JSON and its request id."""


def stored(answer: Any) -> Stored | None:
    """What the response cache keeps of ``answer`` (a parsed answer, or ``None``)."""
    return None if answer is None else (answer.raw, answer.request_id)


def reparse(endpoint: Endpoint[Q, A], request: Q, raw: object, request_id: str | None) -> A:
    """A stored answer (its JSON and request id, from the response cache) parsed as the
    endpoint parses an answer to ``request``."""
    return endpoint.parser(request)(raw, request_id)


def identity(endpoint: Endpoint[Q, Any], request: Q, sampled: bool) -> Identity | None:
    """The :class:`Identity` of ``request``, or ``None`` when it is not deterministic and
    ``sampled`` is false (no body encoded: the common case costs one check), or when its
    body cannot be made (the send reports why: nothing is shared for it)."""
    deterministic = endpoint.deterministic(request)
    if not (deterministic or sampled):
        return None
    try:
        body = json.loads(endpoint.encode(request))
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    except Exception:
        return None
    digest = hashlib.sha256(f"{endpoint.operation}\x1f{endpoint.path}\x1f".encode())
    digest.update(canonical.encode("ascii"))
    return Identity(digest.digest(), deterministic)


async def through_cache(
    cache: CacheStore, endpoint: Endpoint[Q, A], request: Q, send: Callable[[], Awaitable[A]]
) -> tuple[A, bool]:
    """The answer to one request, from ``cache`` when it holds one for a deterministic
    ``request``, else ``send()``'s (then stored); ``(answer, whether it came from the
    cache)``.  A request that is not deterministic is sent without a look-up; an entry the
    endpoint does not parse (any more) is a miss.  Blocks on the cache's file (a worker
    thread) before and after sending."""
    found = identity(endpoint, request, sampled=False)
    if found is None:
        return await send(), False
    key = cache.key(found.key)
    entry = (await cache.get([key])).get(key)
    if entry is not None:
        try:
            return reparse(endpoint, request, *entry), True
        except Exception:
            pass  # sent again, and stored anew
    answer = await send()
    kept = stored(answer)
    if kept is not None:
        await cache.put([(key, *kept)])
    return answer, False


class Sender:
    """The one send path: any endpoint's request on the engine, plain (:meth:`send`) or
    streamed (:meth:`stream`, read whole; :meth:`open`, the attempt of a live stream)."""

    __slots__ = ("engine", "http")

    def __init__(self, engine: Engine, http: HTTP) -> None:
        self.engine = engine
        self.http = http

    def send(
        self,
        endpoint: Endpoint[Q, A],
        request: Q,
        plan: Plan,
        history: list[Attempt] | None = None,
    ) -> Awaitable[A]:
        """The engine's coroutine for ``request`` (encoded now: an error raises here)."""
        ex = self.prepare(endpoint, request, plan)
        parse = endpoint.parser(request)
        follow_up = endpoint.follow_up(request, plan.stream)
        if follow_up is None:
            return self.fetch(ex, plan, parse, endpoint.usage, history)
        http, sent = self.http, ex

        async def attempt(current: Attempting) -> A:
            nonlocal sent
            try:
                return await http.fetch_json(sent, parse, current)
            except AttemptFailure as failure:
                again = follow_up(failure)
                if again is not None:
                    sent = self.prepare(endpoint, again, plan)
                raise

        return self.engine.call(plan, history).run(attempt, usage=endpoint.usage)

    def prepare(self, endpoint: Endpoint[Q, A], request: Q, plan: Plan) -> Exchange:
        """``request``'s exchange (an :class:`InvalidRequestError` here: nothing sent)."""
        return self.http.prepare(
            "POST", endpoint.path, body=endpoint.encode(request), key=plan.key,
            timeouts=plan.timeouts,
        )  # fmt: skip

    def fetch(
        self,
        ex: Exchange,
        plan: Plan,
        parse: Callable[[object, str | None], T],
        usage: Callable[[T], Tokens | None] = lambda _: None,
        history: list[Attempt] | None = None,
    ) -> Awaitable[T]:
        """A plain JSON exchange on the attempt engine (``usage``: what it cost): the
        engine's coroutine, not one of its own (one frame less on every request's way).
        On the fast lane (``ex.wire``), the lane's waits keep ``Timeouts.attempt``."""
        attempt = JsonAttempt(self.http, ex, parse)
        call = self.engine.call(plan, history)
        return call.run(attempt, usage=usage, bounded=ex.wire is not None)

    # ------------------------------------------------------------------ streamed

    def prepare_stream(
        self,
        endpoint: StreamingEndpoint[Q, Any, Any],
        request: Q,
        plan: Plan,
        include_usage: bool = True,
    ) -> Exchange:
        """``request``'s streamed exchange (``Accept: text/event-stream``, no read timeout
        of the transport's: the reader keeps its own); an :class:`InvalidRequestError`
        here: nothing sent."""
        return self.http.prepare(
            "POST", endpoint.path, body=endpoint.encode_stream(request, include_usage),
            key=plan.key, timeouts=plan.timeouts, stream=True,
        )  # fmt: skip

    def stream(
        self,
        endpoint: StreamingEndpoint[Q, A, R],
        request: Q,
        plan: Plan,
        history: list[Attempt] | None = None,
        first_chunk: Callable[[float], None] | None = None,
    ) -> Awaitable[A]:
        """The engine's coroutine for ``request`` streamed and read to its end: its
        answer, whole (a batch item with ``stream=True``).

        Each attempt reads the whole stream: a stream that breaks after its first chunk
        (cut, malformed, an error event, silence) is retried whole, with the same
        ``Idempotency-Key``; nothing was handed out, so nothing is lost or repeated.
        ``first_chunk`` is told when an attempt's first chunk arrives (trio time: a
        batch's hedging learns the time to first token from it).
        """
        sent = self.prepare_stream(endpoint, request, plan)
        parse = endpoint.stream_parser(request)
        follow_up = endpoint.follow_up(request, True)
        ledger = self.engine.ledger

        async def attempt(current: Attempting) -> A:
            nonlocal sent
            reader = await self.open(endpoint, sent, plan, current)
            try:
                if first_chunk is not None and current.first_chunk is not None:
                    first_chunk(current.first_chunk)
                await reader.read_to_end(plan.timeouts.read)
                await reader.drain()
            finally:
                await reader.close()
            if reader.no_done:
                ledger.stream_ended_without_done(
                    plan.custom_id, plan.key, current.number, reader.broken
                )
            try:
                return parse(reader)
            except AttemptFailure as failure:
                again = follow_up(failure) if follow_up is not None else None
                if again is not None:  # a re-ask: what was wrong with the answer
                    sent = self.prepare_stream(endpoint, again, plan)
                raise

        return self.engine.call(plan, history).run(attempt, usage=endpoint.usage)

    async def open(
        self,
        endpoint: StreamingEndpoint[Any, Any, R],
        ex: Exchange,
        plan: Plan,
        current: Attempting,
        resume: Any = None,
    ) -> R:
        """One attempt up to its first chunk (or the end), under the first-token deadline
        (``resume``: it resumes a broken stream, whose reader the new one carries on)."""
        deadline, which = _first_deadline(plan.timeouts, current.started)
        reader: R | None = None
        try:
            with trio.move_on_at(deadline):
                reader = await self._start(endpoint, ex, current, resume)
                await reader.next_chunk()
                if reader.chunks:
                    current.first_chunk = trio.current_time()
                reader.stall = StallWatch.of(plan.timeouts)  # (from the first chunk on)
                return reader
            raise _first_timeout(plan, which, reader)
        except BaseException:
            if reader is not None:
                await reader.close()
            raise

    async def _start(
        self,
        endpoint: StreamingEndpoint[Any, Any, R],
        ex: Exchange,
        current: Attempting,
        resume: Any,
    ) -> R:
        http = self.http
        response = await http.send(ex)
        status = response.status_code
        current.responded(status, http.request_id(response), response.headers)
        if not 200 <= status < 300:
            await http.read(response)
            raise http.status_failure(response)
        reader = endpoint.stream_reader(http, response, resume)
        current.progress = reader.progress
        content_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type != "text/event-stream":
            await reader.close()
            raise reader.invalid(
                f"expected a text/event-stream response, got {content_type or 'none'!r} "
                f"(status {status})"
            )
        return reader


def _first_deadline(t: Timeouts, start: float) -> tuple[float, TimeoutKind]:
    options: list[tuple[float, TimeoutKind]] = [(math.inf, "first_token")]
    if t.first_token is not None:
        options.append((start + t.first_token, "first_token"))
    elif t.read is not None:
        options.append((start + t.read, "stream"))
    if t.attempt is not None:
        options.append((start + t.attempt, "attempt"))
    return min(options, key=lambda option: option[0])


def _first_timeout(plan: Plan, which: TimeoutKind, reader: Reader | None) -> AttemptFailure:
    t = plan.timeouts
    if which == "first_token":
        limit = f"Timeouts.first_token={t.first_token:g}s"
    elif which == "attempt":
        limit = f"Timeouts.attempt={t.attempt:g}s"
    else:
        limit = f"Timeouts.read={t.read:g}s (Timeouts.first_token is None)"
    got = (
        f" (status {reader.status}, {reader.bytes_received} bytes received)"
        if reader is not None
        else " (no response)"
    )
    error = APITimeoutError(f"no chunk within {limit}{got}", which=which)
    return AttemptFailure(error, "timeout")


async def close_response(
    response: httpx2.Response, parts: AsyncGenerator[bytes, None] | None
) -> None:
    """Close a streamed ``response`` at once, ``parts`` (its ``aiter_bytes()``, perhaps
    suspended mid-body) included; shielded: closing must not be cancelled half-way.  The
    ``close`` of every :class:`Reader`.

    ``parts.aclose()`` is not enough: httpx2 wraps httpcore2's body generator in another
    one that does not close it, so it would be garbage collected unfinished (a
    ``ResourceWarning`` from trio).  Resuming the chain inside a cancelled scope makes the
    innermost read raise ``Cancelled``, which unwinds every generator of the chain; the
    connection is then closed (the server sees the disconnect).
    """
    with trio.CancelScope(shield=True):
        if parts is not None:
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
        await response.aclose()
