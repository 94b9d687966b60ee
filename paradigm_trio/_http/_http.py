"""The HTTP layer: one path to the transport, and what came back parsed or classified.

Everything that turns an HTTP exchange into "a result or a classified failure" goes through
here, so that the attempt engine (``_attempts``) never sees HTTP and the request kinds above
it (chat, streams, models) never see ``httpx2`` exceptions:

* :meth:`HTTP.send` is the only call into the transport (plain and streamed requests alike).
  With a client-owned transport it goes straight to ``handle_async_request`` (the
  ``httpx2.AsyncClient`` layer has nothing to do for us and costs ~30 us a request); with a
  user's ``httpx2.AsyncClient`` it goes through that client.
* :class:`JsonAttempt` (:meth:`HTTP.fetch_json`) is the attempt function of plain JSON
  requests (on the default transport's fast lane when it can, where the transport reports
  the exchange to it and its coroutine is the attempt's own).
* The failures are built by :class:`~paradigm_trio._failures.Failures`, which ``HTTP``
  inherits: ``transport_failure`` (the one mapping of ``httpx2`` exceptions),
  ``status_failure`` and ``error_event_failure`` (one builder of status errors).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import httpx2
import trio

from .._attempt_failure import AttemptFailure
from .._config import Timeouts
from .._errors import APIResponseValidationError
from .._json import parse_json
from .._redact import Redactor
from .._transport import FastLane, TrioTransport, header_map
from ._failures import RAW_LIMIT, Failures

__all__ = ["Exchange", "HTTP", "JsonAttempt", "Responder", "Upload"]

T = TypeVar("T")


@dataclass(slots=True)
class Exchange:
    """What every attempt of one logical request sends (prepared once, before the first)."""

    method: str
    url: str
    body: bytes | None
    headers: dict[str, str] = field(repr=False)  # ``Authorization`` holds the key
    timeouts: Timeouts
    """The request's timeouts, one value: each transport converts them where it applies
    them (``HTTP.send``: ``httpx2``'s timeout extension; the fast lane: its own)."""
    stream: bool = False
    """A stream: no HTTP read timeout (the stream bounds its waits itself)."""
    wire: bytes | None = field(default=None, repr=False)
    """The whole request for the default transport's fast lane (``None``: no fast lane)."""
    upload: Upload | None = None
    """A body streamed from its source at each attempt (a file from disk), instead of
    ``body``."""


class JsonAttempt(Generic[T]):
    """One attempt of a plain JSON exchange, as the engine calls it (``attempt(current)``):
    the parsed answer, or raise its failure (:meth:`HTTP.fetch_json`).

    One object per request, where ``functools.partial(http.fetch_json, ex, parse)`` made
    three (the partial, its arguments' tuple, the bound method).  On the default
    transport's fast lane it is also what the transport reports the exchange to
    (:meth:`head`, :meth:`answer`, :meth:`failed`: the transport's ``Answering``), so that
    the attempt awaits the transport's coroutine itself, with no frame of this layer
    waiting above it while the answer comes: each object and frame a request holds while
    it waits is walked again and again by the cyclic garbage collector.
    """

    __slots__ = ("_ex", "_http", "_parse")

    def __init__(self, http: HTTP, ex: Exchange, parse: Callable[[object, str | None], T]) -> None:
        self._http = http
        self._ex = ex
        self._parse = parse

    def __call__(self, current: Responder) -> Awaitable[T]:
        ex, lane = self._ex, self._http.lane
        if ex.wire is None or lane is None:
            return self._http.fetch_httpx(ex, self._parse, current)
        return lane.transport.fetch(
            lane.origin, ex.wire, lane.timeouts(ex.timeouts), self, current, current.until
        )

    def head(
        self, current: Responder, status: int, raw: list[tuple[bytes, bytes]]
    ) -> tuple[str | None, bool]:
        """The fast lane's response head: ``current`` is told (a body that then breaks is a
        failure *with* a response); ``(request id, whether the body is encoded)``."""
        headers = header_map(raw)
        request_id = self._http.redactor.optional(headers.get("x-request-id"))
        current.responded(status, request_id, headers)
        return request_id, "content-encoding" in headers

    def answer(
        self,
        status: int,
        raw: list[tuple[bytes, bytes]],
        content: bytes,
        head: tuple[str | None, bool],
    ) -> T:
        """The fast lane's whole response: its parsed answer, or raise its failure.  No
        ``httpx2`` objects unless the answer is an error or an encoded body (then, as
        ``httpx2`` sees it, decoded)."""
        request_id, encoded = head
        http = self._http
        if 200 <= status < 300 and not encoded:
            return http.parse_body(status, request_id, content, self._parse)
        response = httpx2.Response(status, headers=raw, stream=httpx2.ByteStream(content))
        try:
            response.read()  # (decodes a compressed body: the bytes are all here)
        except httpx2.HTTPError as exc:
            raise http.transport_failure(exc) from None
        finally:
            response.close()
        return http.answer(response, self._parse)

    def failed(self, exc: httpx2.HTTPError) -> AttemptFailure:
        """What the fast lane raises for the exchange's failure (``exc``)."""
        return self._http.transport_failure(exc)


class Upload(Protocol):
    """A request body produced anew for each attempt, never held whole (a multipart
    upload of a file read from disk)."""

    @property
    def content_type(self) -> str: ...
    @property
    def length(self) -> int: ...
    def open(self) -> AsyncIterable[bytes]:
        """The body's bytes, from the start."""
        ...


class Responder(Protocol):
    """What an attempt function tells about a response (the engine's ``Attempting``), and
    ``until``: the attempt's deadline when the engine asks the attempt to keep it itself
    (the fast lane's waits end by it; ``inf``: the engine's cancel scope does)."""

    @property
    def until(self) -> float: ...

    def responded(
        self, status: int, request_id: str | None, headers: Mapping[str, str]
    ) -> None: ...


class HTTP(Failures):
    """Sends exchanges and classifies what comes back.  One per :class:`Client`.

    The failures are built by the methods it inherits from :class:`Failures`
    (:meth:`transport_failure`, :meth:`status_failure`, ...).

    Args:
        base_url: the API root every path is appended to.
        headers: headers of every request (``Authorization`` included).
        http_client: the user's ``httpx2.AsyncClient``, which sends when there is no
            ``direct`` transport.
        direct: the client's own transport, called directly.
        redactor: removes the API key (and URL passwords) from what came from the server
            or the network, before any error, record or event is built from it.
    """

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        http_client: httpx2.AsyncClient | None,
        direct: httpx2.AsyncBaseTransport | None,
        redactor: Redactor,
    ) -> None:
        super().__init__(base_url=base_url, redactor=redactor)
        self.headers = dict(headers)
        self._http = http_client
        self._direct = direct
        # (Timeouts, stream) -> (httpx2.Timeout, its extension): built once, not per attempt.
        self._timeouts: dict[tuple[Timeouts, bool], tuple[httpx2.Timeout, dict[str, Any]]] = {}
        self.lane = FastLane.of(direct, base_url, self.headers)
        """The default transport's fast lane (``None``: requests go through ``httpx2``)."""

    @staticmethod
    def http_timeout(timeouts: Timeouts, *, read: bool = True) -> httpx2.Timeout:
        """The ``httpx2`` timeouts of :class:`Timeouts` (``pool=None``: the limiter waits)."""
        return httpx2.Timeout(
            connect=timeouts.connect,
            read=timeouts.read if read else None,
            write=timeouts.write,
            pool=None,
        )

    def prepare(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None,
        key: str,
        timeouts: Timeouts,
        stream: bool = False,
        upload: Upload | None = None,
    ) -> Exchange:
        """The exchange of one logical request; ``key`` is its ``Idempotency-Key``.

        For a stream the HTTP read timeout is off: the stream enforces ``first_token`` and
        the inactivity timeout itself, as cancel scopes.  An ``upload`` is the body,
        streamed (``body`` is then ``None``).
        """
        headers = dict(self.headers)
        headers["Idempotency-Key"] = key
        if upload is not None:
            headers["Content-Type"] = upload.content_type
            headers["Content-Length"] = str(upload.length)
        elif body is None:
            del headers["Content-Type"]
        if stream:
            headers["Accept"] = "text/event-stream"
        ex = Exchange(method, self.url_for(path), body, headers, timeouts, stream)
        ex.upload = upload
        if not stream and upload is None and self.lane is not None:
            ex.wire = self.lane.request(method, ex.url, body, key)
        return ex

    def _httpx_timeouts(self, ex: Exchange) -> tuple[httpx2.Timeout, dict[str, Any]]:
        """``ex``'s timeouts as ``httpx2`` applies them: ``httpx2.Timeout`` and the
        ``timeout`` extension a transport reads (cached per :class:`Timeouts`)."""
        cached = self._timeouts.get((ex.timeouts, ex.stream))
        if cached is None:
            if len(self._timeouts) >= 64:  # many one-off Timeouts: keep the cache small
                self._timeouts.clear()
            timeout = self.http_timeout(ex.timeouts, read=not ex.stream)
            cached = self._timeouts[ex.timeouts, ex.stream] = (
                timeout, {"timeout": timeout.as_dict()}
            )  # fmt: skip
        return cached

    def url_for(self, path: str) -> str:
        """The URL of ``path``: under the API root, or, for a v3 path
        (``/api/v3/...``), beside it (the root's ``/api/v2`` or ``/v1`` replaced)."""
        if not path.startswith("/api/v3/"):
            return self.base_url + path
        root = self.base_url
        for suffix in ("/api/v2", "/v1"):
            if root.endswith(suffix):
                return root[: -len(suffix)] + path
        return root + path

    async def warm_up(
        self,
        connections: int,
        connect_timeout: float | None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> int:
        """Open up to ``connections`` to the API's server for the requests to come, on
        the client's own :class:`TrioTransport` (another transport: nothing to do, 0)."""
        if isinstance(self._direct, TrioTransport):
            return await self._direct.warm_up(
                self.base_url, connections, connect_timeout=connect_timeout,
                task_status=task_status,
            )  # fmt: skip
        task_status.started()
        await trio.lowlevel.checkpoint()
        return 0

    async def send(self, ex: Exchange) -> httpx2.Response:
        """Send one attempt of ``ex`` and return the response as soon as its head arrives.

        The response is open: the caller reads its body and closes it.

        Raises:
            AttemptFailure: the transport failed (mapped by :meth:`transport_failure`).
        """
        # The attempt's checkpoint (``Attempting.take`` makes none when a slot is free): a user's
        # transport may never yield (``httpx2.MockTransport``).
        await trio.lowlevel.checkpoint()
        timeout, extensions = self._httpx_timeouts(ex)
        content = ex.body if ex.upload is None else ex.upload.open()
        try:
            if self._direct is None:
                assert self._http is not None
                request = self._http.build_request(
                    ex.method, ex.url, content=content, headers=ex.headers, timeout=timeout
                )
                response = await self._http.send(request, stream=True)
            else:
                request = httpx2.Request(
                    ex.method, ex.url, content=content, headers=ex.headers, extensions=extensions
                )
                response = await self._direct.handle_async_request(request)
        except httpx2.HTTPError as exc:
            raise self.transport_failure(exc) from None
        return response

    def fetch_json(
        self,
        ex: Exchange,
        parse: Callable[[object, str | None], T],
        current: Responder,
    ) -> Awaitable[T]:
        """One attempt of a plain JSON exchange: the parsed answer, or raise its failure
        (:class:`JsonAttempt`'s, for an exchange that has none of its own).

        ``current`` (the attempt under way) is told the status, request id and headers of
        the response as soon as its head arrives: a body that then breaks is a failure
        *with* a response.  (The coroutine of the lane taken, not one of its own.)
        """
        return JsonAttempt(self, ex, parse)(current)

    async def fetch_httpx(
        self,
        ex: Exchange,
        parse: Callable[[object, str | None], T],
        current: Responder,
    ) -> T:
        """:meth:`fetch_json` through ``httpx2`` (a user's transport, a proxy...)."""
        response = await self.send(ex)
        current.responded(response.status_code, self.request_id(response), response.headers)
        await self.read(response)
        return self.answer(response, parse)

    def answer(
        self,
        response: httpx2.Response,
        parse: Callable[[object, str | None], T],
    ) -> T:
        """The parsed answer of a whole response read, or raise its failure."""
        if 200 <= response.status_code < 300:
            return self.parse(response, parse)
        raise self.status_failure(response)

    async def read(self, response: httpx2.Response) -> None:
        """Read the whole body of ``response`` and close it."""
        try:
            await response.aread()
        except httpx2.HTTPError as exc:
            raise self.transport_failure(exc) from None
        finally:
            await response.aclose()

    def parse(
        self,
        response: httpx2.Response,
        parse: Callable[[object, str | None], T],
    ) -> T:
        """The parsed body of a whole 2xx response, or raise its failure."""
        return self.parse_body(
            response.status_code, self.request_id(response), response.content, parse
        )

    def parse_body(
        self,
        status: int,
        request_id: str | None,
        content: bytes,
        parse: Callable[[object, str | None], T],
    ) -> T:
        """The parsed ``content`` of a 2xx response (``None`` for a ``204 No Content``), or
        raise its failure."""
        try:
            data = None if status == 204 and not content else parse_json(content)
        except ValueError as exc:
            err = APIResponseValidationError(
                f"the response (status {status}) is not valid JSON: {exc}",
                raw=self.redactor.clip(content.decode("utf-8", "replace"), RAW_LIMIT),
                status_code=status,
                request_id=request_id,
            )
            raise AttemptFailure(err, "invalid_response") from None
        try:
            return parse(data, request_id)
        except APIResponseValidationError as err:
            clean = self.invalid_data(parse, data, request_id, err)
            clean.status_code = status
            clean.raw = self.redactor.clip(content.decode("utf-8", "replace"), RAW_LIMIT)
            raise AttemptFailure(clean, "invalid_response") from None
