"""The peers, each driving the same workload the way a user of that library would.

Every driver runs in its own child process (see ``_worker``): a fresh interpreter per
measurement, so CPU time, memory peaks and connection pools never mix.

* ``aiohttp``: the reference page's recipe, ``asyncio.gather`` over one coroutine per
  request, with an ``asyncio.Semaphore`` for the concurrency (the recipe has none) and a
  ``TCPConnector(limit=concurrency)``.
* ``openai``: ``openai.AsyncOpenAI`` under trio (it runs on anyio), its default retries
  (2), its ``DefaultAsyncHttpxClient`` with the pool sized to the concurrency (its default
  pool keeps only 100 idle connections, which would make it reconnect).
* ``httpx`` / ``httpx2``: a plain ``AsyncClient`` under trio, pool sized to the
  concurrency, 60 s timeouts, JSON decoded.
* ``paradigm-trio``: ``Client.stream_batch`` over a lazy generator (``Limits(concurrency=C)``,
  everything else default), ``Client.chat`` for sequential runs.
* ``floor`` (scaling only, a baseline, not a peer): no HTTP library, raw trio sockets and
  ``json``; the best a trio client can do against the same server on the same machine.

The trio peers other than paradigm-trio use a hand-written pool of ``C`` worker tasks
pulling request numbers from a shared counter: the cheapest correct way to bound
concurrency in trio, so the comparison is with each HTTP library at its best.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._common import API_KEY, MODEL, body, idempotency_key, messages

One = Callable[[int], Awaitable[None]]


def _headers(task: dict[str, Any], i: int) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    if task.get("keys"):
        headers["Idempotency-Key"] = idempotency_key(f"{task['keys']}-{i}")
    return headers


def _check(data: Any) -> None:
    if not isinstance(data["choices"][0]["message"]["content"], str):
        raise ValueError("no content in the response")


class Counts:
    """Outcomes of a run: successes, errors (with the first one kept), wall and CPU time."""

    def __init__(self) -> None:
        self.ok = 0
        self.errors = 0
        self.first_error: str | None = None

    def fail(self, exc: BaseException) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"[:300]


class GcClock:
    """The garbage collector's share of a run (scenario 16, ``gc_share``), with
    ``gc.callbacks``: the CPU time spent in collections of each generation, how many there
    were, and the most objects the collector tracked at the end of a full collection (all
    that is alive then: the program's own, and what the requests in flight hold)."""

    def __init__(self) -> None:
        self.on = False
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self.base = 0  # objects tracked when the run started
        self.peak = 0
        self.started = False
        self._began = 0.0

    def start(self, task: dict[str, Any]) -> None:
        """From now on (when the task asks for it: ``"gc": true``)."""
        if not task.get("gc") or self.on:
            return
        if "gc_threshold" in task:
            gc.set_threshold(*task["gc_threshold"])
        if task.get("gc_freeze"):
            gc.freeze()  # what is alive now (the modules, the client) is never walked again
        self.on = self.started = True
        self.base = self.peak = len(gc.get_objects())
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.process_time()
            return
        generation = info["generation"]
        self.seconds[generation] += time.process_time() - self._began
        self.collections[generation] += 1
        if generation == 2:
            self.peak = max(self.peak, len(gc.get_objects()))

    def stop(self) -> None:
        """The run is over: collections from now on are not its own."""
        if self.on:
            gc.callbacks.remove(self._callback)
            self.on = False

    def reading(self) -> dict[str, Any]:
        self.stop()
        if not self.started:
            return {}
        return {
            "gc_seconds": sum(self.seconds),
            "gc_seconds_by_generation": self.seconds,
            "gc_collections": self.collections,
            "gc_objects_base": self.base,
            "gc_objects_peak": self.peak,
            "gc_threshold": gc.get_threshold(),
        }


GC = GcClock()


def _result(counts: Counts, n: int, wall: float, cpu: float) -> dict[str, Any]:
    return {
        "ok": counts.ok,
        "errors": counts.errors,
        "unfinished": n - counts.ok - counts.errors,
        "wall": wall,
        "cpu": cpu,
        "first_error": counts.first_error,
        **GC.reading(),
    }


# ---------------------------------------------------------------------- trio peers


async def _pool(n: int, concurrency: int, one: One, counts: Counts) -> None:
    """``concurrency`` workers sending requests ``0 .. n-1`` (each once)."""
    numbers: Iterator[int] = iter(range(n))

    async def worker() -> None:
        for i in numbers:
            try:
                await one(i)
            except Exception as exc:
                counts.fail(exc)
            else:
                counts.ok += 1

    async with trio.open_nursery() as nursery:
        for _ in range(min(concurrency, n)):
            nursery.start_soon(worker)


@asynccontextmanager
async def _httpx_one(task: dict[str, Any], module: Any) -> AsyncIterator[One]:
    c = task["concurrency"]
    limits = module.Limits(max_connections=c, max_keepalive_connections=c)
    url = task["url"] + "/chat/completions"
    async with module.AsyncClient(limits=limits, timeout=60.0, trust_env=False) as client:

        async def one(i: int) -> None:
            response = await client.post(url, json=body(i), headers=_headers(task, i))
            response.raise_for_status()
            _check(response.json())

        yield one


@asynccontextmanager
async def _openai_one(task: dict[str, Any]) -> AsyncIterator[One]:
    import openai

    c = task["concurrency"]
    module = openai_http_module()
    http = openai.DefaultAsyncHttpxClient(
        limits=module.Limits(max_connections=c, max_keepalive_connections=c), trust_env=False
    )
    async with openai.AsyncOpenAI(
        api_key=API_KEY, base_url=task["url"], http_client=http
    ) as client:

        async def one(i: int) -> None:
            headers = _headers(task, i)
            extra = {"Idempotency-Key": headers["Idempotency-Key"]} if task.get("keys") else None
            completion = await client.chat.completions.create(
                model=MODEL, messages=messages(i), temperature=0.4, max_tokens=150,
                extra_headers=extra,
            )  # fmt: skip
            if not isinstance(completion.choices[0].message.content, str):
                raise ValueError("no content")

        yield one


async def _bare_one(task: dict[str, Any]) -> tuple[One, Callable[[], Awaitable[None]]]:
    """The floor: no HTTP library, one raw trio socket per worker, the request built with
    an f-string and ``json.dumps``, the answer read up to its ``Content-Length`` and
    decoded with ``json.loads``.  No retries, timeouts, pool or validation: what is left is
    trio, the kernel and the raw server, so a real client cannot do better than this."""
    import json

    host, port = task["url"].split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    path = task["url"].split("//", 1)[1].split("/", 1)[1]
    streams: list[trio.SocketStream] = []
    idle: list[trio.SocketStream] = []

    async def exchange(stream: trio.SocketStream, i: int) -> Any:
        payload = json.dumps(body(i)).encode()
        head = f"POST /{path}/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in _headers(task, i).items())
        head += f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
        await stream.send_all(head.encode() + payload)
        data = b""
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
            end = data.find(b"\r\n\r\n")
            if end < 0:
                continue
            lines = data[:end].split(b"\r\n")
            fields = dict(line.lower().split(b":", 1) for line in lines[1:])
            length = int(fields[b"content-length"])
            if len(data) >= end + 4 + length:
                if lines[0].split()[1] != b"200":
                    raise ValueError(lines[0].decode())
                return json.loads(data[end + 4 : end + 4 + length])

    async def one(i: int) -> None:
        if idle:
            stream = idle.pop()
        else:
            stream = await trio.open_tcp_stream(host, int(port))
            streams.append(stream)
        _check(await exchange(stream, i))
        idle.append(stream)

    async def close() -> None:
        for stream in streams:
            await stream.aclose()

    return one, close


def openai_http_module() -> Any:
    """``httpx2`` for openai 3.x (built on it), ``httpx`` for the 1.x series."""
    import httpx2
    import openai

    if issubclass(openai.DefaultAsyncHttpxClient, httpx2.AsyncClient):
        return httpx2
    import httpx

    return httpx


def _pt_requests(task: dict[str, Any], start: int, n: int) -> Iterator[Any]:
    import paradigm_trio as pt

    prefix = task.get("keys")
    for i in range(start, start + n):
        if prefix:
            yield pt.ChatRequest(messages=messages(i), custom_id=f"{prefix}-{i}")
        else:
            yield messages(i)


async def _pt_batch(client: Any, task: dict[str, Any], start: int, n: int, counts: Counts) -> None:
    async with client.stream_batch(
        _pt_requests(task, start, n), temperature=0.4, max_tokens=150, **task.get("batch", {})
    ) as results:
        async for result in results:
            if result.ok:
                counts.ok += 1
            else:
                counts.fail(result.error)


def _instrument(client: Any, spans: int) -> Any:
    """``pt.instrument`` with the OpenTelemetry SDK as a user would set it up: spans through
    a ``BatchSpanProcessor`` (to an exporter that drops them: the export is not the
    client's cost), metrics with a reader (collected at the end).  The processor's queue
    holds ``spans``: with its default (2,048) it dropped most spans of a run, and the cost
    measured was that of dropping them.  Returns the tracer provider (to flush)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    import paradigm_trio as pt

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop(), max_queue_size=spans))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    pt.instrument(client, tracer_provider=tracer_provider, meter_provider=meter_provider)
    return tracer_provider


async def _trio_drive(task: dict[str, Any]) -> dict[str, Any]:
    peer, n, c = task["peer"], task["n"], task["concurrency"]
    sequential = task.get("mode") == "sequential"
    warmup = task.get("warmup", 0)
    limit = task.get("limit") or math.inf
    counts = Counts()
    if peer == "paradigm-trio":
        import paradigm_trio as pt

        async with pt.Client(
            api_key=API_KEY,
            base_url=task["url"],
            limits=pt.Limits(concurrency=c),
            **task.get("client", {}),  # proxy=, verify= (scenario 9, proxy)
        ) as client:
            provider = None
            if task.get("otel"):
                # A span per request and per attempt, and the batches': 4 per request is room.
                provider = _instrument(client, 4 * (n + warmup) + 1024)
            if warmup:
                await _pt_batch(client, task, n, warmup, Counts())
            GC.start(task)
            wall0, cpu0 = time.perf_counter(), time.process_time()
            with trio.move_on_after(limit):
                if sequential:
                    for request in _pt_requests(task, 0, n):
                        try:
                            await client.chat(request, temperature=0.4, max_tokens=150)
                        except pt.APIError as exc:
                            counts.fail(exc)
                        else:
                            counts.ok += 1
                else:
                    await _pt_batch(client, task, 0, n, counts)
            if provider is not None:  # the spans of the run processed within its time
                provider.force_flush()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            GC.stop()
        return _result(counts, n, wall, cpu)

    if peer == "floor":
        one, close = await _bare_one(task)
        GC.start(task)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        with trio.move_on_after(limit):
            await _pool(n, c, one, counts)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        GC.stop()
        await close()
        return _result(counts, n, wall, cpu)

    if peer == "openai":
        opened = _openai_one(task)
    else:
        module = __import__(peer)  # "httpx" or "httpx2"
        opened = _httpx_one(task, module)
    async with opened as one:
        if warmup:
            await _pool(warmup, c, lambda i: one(n + i), Counts())
        wall0, cpu0 = time.perf_counter(), time.process_time()
        with trio.move_on_after(limit):
            await _pool(n, 1 if sequential else c, one, counts)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        GC.stop()
    return _result(counts, n, wall, cpu)


# ---------------------------------------------------------------------- the seed recipe


async def _aiohttp_drive(task: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    n, c = task["n"], task["concurrency"]
    sequential = task.get("mode") == "sequential"
    warmup = task.get("warmup", 0)
    limit = task.get("limit") or None
    url = task["url"] + "/chat/completions"
    counts = Counts()
    semaphore = asyncio.Semaphore(c)
    connector = aiohttp.TCPConnector(limit=c)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def send(i: int, into: Counts) -> Any:
            try:
                async with (
                    semaphore,
                    session.post(url, headers=_headers(task, i), json=body(i)) as response,
                ):
                    response.raise_for_status()
                    data = await response.json()
                    _check(data)
            except Exception as exc:
                into.fail(exc)
                return exc
            into.ok += 1
            return data

        async def gather(start: int, count: int, into: Counts) -> list[Any]:
            # The recipe: one coroutine per request, all handed to gather at once, every
            # response kept in the list gather returns.
            return await asyncio.gather(*(send(i, into) for i in range(start, start + count)))

        async def run_all() -> None:
            if sequential:
                for i in range(n):
                    await send(i, counts)
            else:
                await gather(0, n, counts)

        if warmup:
            await gather(n, warmup, Counts())
        GC.start(task)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        try:
            async with asyncio.timeout(limit):
                await run_all()
        except TimeoutError:
            pass
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        GC.stop()
    return _result(counts, n, wall, cpu)


def drive(task: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement of ``task["peer"]`` (see the module docstring)."""
    if task["peer"] == "aiohttp":
        return asyncio.run(_aiohttp_drive(task))
    return trio.run(_trio_drive, task)
