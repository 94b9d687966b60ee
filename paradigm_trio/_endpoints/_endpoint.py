"""The endpoint protocol: what a request kind says of itself, and the one send path.

An :class:`Endpoint` is a request kind of the API (chat completions, embeddings): how its
request is encoded, how its answer is parsed, the usage the answer reports, and what
telemetry records of both.  :class:`Sender` is the one path that sends any endpoint's
request through the attempt engine; the engine sees the endpoint only as an opaque part
of the ``Plan`` (for the observers), never its types.  Adding an endpoint is one module
(its request, its answer, an ``Endpoint``) and its tests.

Most requests send the same bytes on every attempt.  One whose failure changes what the
next attempt says (a re-ask that tells the model what was wrong with its tool call) has
:meth:`Endpoint.follow_up`: the request the attempt after a given failure sends.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol, TypeAlias, TypeVar

from .._engine._attempts import Attempting, Engine, Plan
from .._engine._dedupe import Identity
from .._engine._ledger import Tokens
from .._errors import AttemptFailure
from .._events import Attempt
from .._http._http import HTTP, Exchange

__all__ = ["Endpoint", "FollowUp", "Request", "Sender", "Stored", "identity", "reparse", "stored"]

T = TypeVar("T")
Q = TypeVar("Q", bound="Request")
Q_contra = TypeVar("Q_contra", bound="Request", contravariant=True)
A = TypeVar("A")


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


class Sender:
    """The one send path of plain requests: any endpoint's request, on the engine."""

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
        attempt = functools.partial(self.http.fetch_json, ex, parse)
        call = self.engine.call(plan, history)
        return call.run(attempt, usage=usage, bounded=ex.wire is not None)
