"""The :class:`SyncClient`: the same engine, on a trio loop of its own, for blocking code.

A :class:`SyncClient` makes a :class:`~paradigm_trio.Client` and runs it on a trio loop
on a daemon thread it owns (``_loop``); every method is a blocking call that runs the
client's method there and waits.  It never touches the caller's event loop, so it works in
a plain script, in a Jupyter kernel (whose asyncio loop runs on the main thread: no
``nest_asyncio``) and from asyncio code through ``asyncio.to_thread``.  Calls from several
threads at once share the one client, its limits and its connections.

Where things can block or be interrupted:

* Each method blocks its calling thread until the client's method has finished.  A
  ``KeyboardInterrupt`` (Ctrl-C, a notebook's interrupt) while waiting cancels the call on
  the loop and waits for it to have ended (milliseconds; at most ``CANCEL_WAIT``) before
  it goes on; a batch then raises :class:`BatchInterrupted`, which carries the results
  finished so far.  The client stays usable.
* :meth:`SyncClient.close` (or leaving ``with``) cancels what runs, closes the client's
  connections and ends the thread, waiting at most ``CLOSE_WAIT``; a client never closed
  is closed when it is garbage collected or when the interpreter exits (``weakref.finalize``).
  At exit that close waits as :meth:`SyncClient.close` does: for the client's calls to be
  cancelled and its connections closed (milliseconds, at most ``CLOSE_WAIT``); past that
  the thread, a daemon, is left to end with the process.  After :meth:`SyncClient.close`,
  every method raises ``RuntimeError`` (as it does in a process forked from the one that
  made the client).
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Self, TypeVar, Unpack

import trio

from . import _frames
from ._client._client import Client
from ._client._files_api import Files
from ._config import Limits
from ._endpoints._chat_kind import BatchInput, BatchResult, BatchResults
from ._endpoints._embedding_kind import EmbeddingResult, EmbeddingResults, EmbedInput
from ._endpoints._embeddings import EncodingFormat
from ._engine._batch_options import BatchKeywords, BatchOptions, BatchStatistics
from ._errors import BatchError
from ._events import ClientStatistics
from ._loop import Job, Loop
from ._sync_streams import SyncBatchStream, SyncChatStream

if TYPE_CHECKING:
    import pandas

__all__ = ["BatchInterrupted", "SyncClient", "SyncFiles"]

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C", bound=Callable[..., Any])

_CLOSED = "this SyncClient is closed: make a new one"

CLOSE_WAIT = 10.0
"""Seconds :meth:`SyncClient.close` waits for the loop's thread to end."""


class BatchInterrupted(KeyboardInterrupt):
    """A blocking batch was interrupted (Ctrl-C, a notebook's interrupt button).

    It is a ``KeyboardInterrupt``, so it stops a script or a cell as one does; the batch
    was cancelled on the client's loop, nothing of it runs any more, and the client stays
    usable.  Catch it to keep what had finished::

        try:
            results = client.chat_batch(prompts)
        except pt.BatchInterrupted as exc:
            results = exc.results      # the finished ones, in input order

    (In IPython or Jupyter, after an uncaught one: ``sys.last_value.results``.)

    Attributes:
        results: the results finished before the interrupt, in input order (each knows
            its ``index``); the items not among them were not finished.
        statistics: the batch's :class:`BatchStatistics` when it stopped.
    """

    def __init__(self, results: Sequence[Any], statistics: BatchStatistics | None = None) -> None:
        super().__init__(
            f"batch interrupted: {len(results)} results had finished; "
            "they are in this exception's .results"
        )
        self.results = tuple(results)
        self.statistics = statistics


def _blocking(
    method: Callable[Concatenate[Client, P], Awaitable[T]],
) -> Callable[Concatenate[SyncClient, P], T]:
    """A blocking method of :class:`SyncClient` that runs ``Client.<method>`` on its loop.

    A new endpoint of :class:`Client` is one line in :class:`SyncClient`:
    ``name = _blocking(Client.name)``.
    """

    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        client = self._check_open()
        return self._run(functools.partial(method, client, *args, **kwargs))

    return _like(call, method, "Blocking")


def _blocking_files(
    method: Callable[Concatenate[Files, P], Awaitable[T]],
) -> Callable[Concatenate[SyncFiles, P], T]:
    """A blocking method of :class:`SyncFiles` that runs ``Files.<method>`` (of the
    client's ``files``) on the client's loop."""

    def call(self: SyncFiles, /, *args: P.args, **kwargs: P.kwargs) -> T:
        client = self._sync._check_open()
        return self._sync._run(functools.partial(method, client.files, *args, **kwargs))

    return _like(call, method, "Blocking", owner="Files")


def _direct(
    method: Callable[Concatenate[Client, P], T],
) -> Callable[Concatenate[SyncClient, P], T]:
    """A method of :class:`SyncClient` that calls ``Client.<method>`` (which never waits)
    here, in the caller's thread."""

    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return method(self._check_open(waits=False), *args, **kwargs)

    return _like(call, method, "The same as")


def _like(call: C, method: Callable[..., Any], intro: str, owner: str = "Client") -> C:
    """``call`` named, documented and signed as ``<owner>.<method>`` (of ``Sync<owner>``)."""
    name = method.__name__
    call.__name__ = name
    call.__qualname__ = f"Sync{owner}.{name}"
    call.__doc__ = (
        f"{intro} :meth:`{owner}.{name}`: takes its arguments, returns or raises what it "
        "does.\n\n" + inspect.cleandoc(method.__doc__ or "")
    )
    call.__signature__ = inspect.signature(method)  # type: ignore[attr-defined]
    call.__annotations__ = dict(method.__annotations__)  # the method's, not P's and T's
    return call


class SyncClient:
    """A blocking client: the engine of :class:`Client`, for scripts, notebooks and threads.

    ::

        with pt.SyncClient() as client:
            results = client.chat_batch(prompts, progress=True)

    It takes the keyword arguments of :class:`Client` (``api_key``, ``base_url``,
    ``limits``, ``retry``...), makes one, and runs it on a trio event loop on a thread of
    its own, opened now and closed by :meth:`close` (or at the end of ``with``).  Its
    methods are the client's, blocking: :meth:`chat`, :meth:`embed`, :meth:`models`,
    Paradigm's own endpoints (:meth:`tokenize`, :meth:`query`, :meth:`filter_chunks`,
    :meth:`document_search`, :meth:`thread_turn`, :meth:`complete`, :meth:`request`, and
    the batches :meth:`tokenize_batch`, :meth:`query_batch`, :meth:`batch_requests`) (with
    the arguments, results and errors of :class:`Client`'s), :meth:`chat_batch`,
    :meth:`embed_batch` (with ``progress=``), :meth:`stream_batch` and
    :meth:`stream_embed_batch` (``with ... as results: for result in results``),
    :meth:`chat_stream` (``with ... as stream: for chunk in stream``), and
    :meth:`chat_frame` / :meth:`embed_frame` for pandas DataFrames, and the documents'
    methods in :attr:`files` (:class:`SyncFiles`).

    Any number of threads may call it at once (``await asyncio.to_thread(client.chat,
    messages)`` from asyncio code): they share the client's limits, rate limits and
    connections.  ``KeyboardInterrupt`` cancels the call under way (see
    :class:`BatchInterrupted` for batches); the client stays usable.

    Raises:
        ConfigurationError: as :class:`Client` does (no thread is left).
    """

    chat = _blocking(Client.chat)
    embed = _blocking(Client.embed)
    models = _blocking(Client.models)
    # Paradigm's own endpoints (the batches run whole, their results in input order).
    tokenize = _blocking(Client.tokenize)
    query = _blocking(Client.query)
    filter_chunks = _blocking(Client.filter_chunks)
    document_search = _blocking(Client.document_search)
    thread_turn = _blocking(Client.thread_turn)
    complete = _blocking(Client.complete)
    request = _blocking(Client.request)
    tokenize_batch = _blocking(Client.tokenize_batch)
    query_batch = _blocking(Client.query_batch)
    batch_requests = _blocking(Client.batch_requests)
    make_request = _direct(Client.make_request)

    def __init__(self, **options: Any) -> None:
        client = Client(**options)
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        self._loop = Loop(lambda: client, name="paradigm-trio SyncClient")
        self._client: Client = self._loop.value
        self._finalizer = weakref.finalize(self, _stop, self._loop, self._pid)

    # ------------------------------------------------------------------ lifecycle

    def __repr__(self) -> str:
        state = "CLOSED" if self._closed else "OPENED"
        return (
            f"<SyncClient base_url={self.base_url!r} model={self.model!r} api_key='***' "
            f"state={state} concurrency={self.limits.concurrency}>"
        )

    @property
    def base_url(self) -> str:
        """The API root (a password in it shows as ``***``)."""
        return self._client.base_url

    @property
    def model(self) -> str:
        """The model of chat requests that name none."""
        return self._client.model

    @property
    def limits(self) -> Limits:
        """The client's :class:`Limits`."""
        return self._client.limits

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def thread(self) -> threading.Thread:
        """The thread the client's loop runs on (a daemon)."""
        return self._loop.thread

    @property
    def files(self) -> SyncFiles:
        """The API's documents, with the methods of :class:`Client`'s ``client.files``
        made blocking (a :class:`SyncFiles`, each method run on this client's loop)."""
        return SyncFiles(self)

    def __enter__(self) -> Self:
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel what runs, close the client's connections and end its thread.

        Idempotent.  It waits at most ``CLOSE_WAIT`` seconds for the thread (a daemon:
        never an obstacle to the interpreter's exit).  Calls under way in other threads
        raise :class:`RuntimeError`.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer()

    def _check_open(self, *, waits: bool = True) -> Client:
        """The client, for a call every entry point makes first: refused once closed,
        in a forked child process (which has no copy of the loop's thread), and, for a
        call that ``waits`` for the loop, from the loop's own thread (it would wait for
        itself forever)."""
        if self._closed:
            raise RuntimeError(_CLOSED)
        if os.getpid() != self._pid:
            raise RuntimeError(
                "this SyncClient was made in another process (this one was forked from "
                "it, and has no copy of its thread): make a new SyncClient here"
            )
        if waits and threading.current_thread() is self._loop.thread:
            raise RuntimeError(
                "a SyncClient cannot be called from its own thread (an on_event or "
                "on_progress callback runs there): call it from another thread"
            )
        return self._client

    def _run(self, fn: Callable[[], Awaitable[T]], tick: Callable[[], object] | None = None) -> T:
        """Run ``fn`` on the loop and wait (the caller has passed :meth:`_check_open`)."""
        return self._loop.run(Job(fn), tick=tick)

    def statistics(self) -> ClientStatistics:
        """A frozen snapshot of the client's counters (taken on its loop).

        Raises:
            RuntimeError: the client is closed (also when closed by another thread
                meanwhile), or this is a forked child.
        """
        client = self._check_open()
        try:
            return trio.from_thread.run_sync(client.statistics, trio_token=self._loop.token)
        except trio.RunFinishedError:
            raise RuntimeError(_CLOSED) from None

    # ------------------------------------------------------------------ batches

    def chat_batch(
        self, requests: Iterable[BatchInput] | AsyncIterable[BatchInput], *,
        progress: bool = False, options: BatchOptions | None = None,
        **keywords: Unpack[BatchKeywords],
    ) -> BatchResults:  # fmt: skip
        """Blocking :meth:`Client.chat_batch`: every result, in input order.

        Takes its arguments (``options=``, the :class:`BatchOptions` keywords), plus
        ``progress=True`` for a progress bar (``tqdm.auto``: a widget in a notebook, a
        bar on a terminal; needs ``paradigm-trio[progress]``).

        Raises:
            BatchInterrupted: ``KeyboardInterrupt`` while it ran; ``.results`` holds the
                results finished until then.
            BatchError: with ``on_error="raise"``, as :meth:`Client.chat_batch`.
        """
        client = self._check_open()
        results = BatchResults()
        results.statistics = self._collect(
            lambda: client.stream_batch(requests, options=options, **keywords),
            requests,
            progress,
            results,
        )
        return results

    def embed_batch(
        self, inputs: Iterable[EmbedInput] | AsyncIterable[EmbedInput], *,
        progress: bool = False, **keywords: Unpack[EmbedKeywords],
    ) -> EmbeddingResults:  # fmt: skip
        """Blocking :meth:`Client.embed_batch` (one result per item, in input order).

        Takes its arguments, plus ``progress=`` as :meth:`chat_batch`, and is interrupted
        as it is (:class:`BatchInterrupted`).
        """
        client = self._check_open()
        results = EmbeddingResults()
        results.statistics = self._collect(
            lambda: client.stream_embed_batch(inputs, **keywords), inputs, progress, results
        )
        return results

    def _collect(
        self,
        open_stream: Callable[[], AbstractAsyncContextManager[Any]],
        items: object,
        progress: bool,
        into: list[Any],
    ) -> BatchStatistics:
        """Run a batch on the loop, its results into ``into`` in input order."""
        finished = _Finished()
        last: list[BatchStatistics] = []  # the statistics when it stopped, however it did

        async def run() -> BatchStatistics:
            async with open_stream() as stream:
                try:
                    async for result in stream:
                        finished.add(result)
                finally:
                    last.append(stream.statistics())
                return last[-1]

        bar = _frames.progress_bar(progress, items)
        advance = None if bar is None else _frames.Advance(bar)
        tick = None if advance is None else functools.partial(advance, finished)
        try:
            statistics = self._run(run, tick)
        except BatchError as exc:
            # (A SystematicFailureError's own results were held, never handed out.)
            exc.results = tuple(_in_order([*finished, *exc.results]))
            raise
        except KeyboardInterrupt:
            done = finished.close()  # (the cancel may have given up waiting: CANCEL_WAIT)
            raise BatchInterrupted(_in_order(done), last[-1] if last else None) from None
        finally:
            if advance is not None:
                advance(finished)
                advance.bar.close()
        into.extend(_in_order(finished))
        return statistics

    def stream_batch(
        self, requests: Iterable[BatchInput] | AsyncIterable[BatchInput], *,
        progress: bool = False, options: BatchOptions | None = None,
        **keywords: Unpack[BatchKeywords],
    ) -> SyncBatchStream[BatchResult]:  # fmt: skip
        """Blocking :meth:`Client.stream_batch`: results as they finish.

        ::

            with client.stream_batch(requests) as results:
                for result in results:          # completion order
                    ...

        Memory is bounded by the concurrency, not the batch size: the batch waits for
        the loop's reader.  Leaving the block (``break``, an exception, an interrupt)
        cancels what still runs; the results the loop handed out are yours.
        """
        client = self._check_open()
        return SyncBatchStream(
            self._loop, lambda: client.stream_batch(requests, options=options, **keywords),
            client.limits.concurrency, functools.partial(_frames.progress_bar, progress, requests),
        )  # fmt: skip

    def stream_embed_batch(
        self, inputs: Iterable[EmbedInput] | AsyncIterable[EmbedInput], *,
        progress: bool = False, **keywords: Unpack[EmbedKeywords],
    ) -> SyncBatchStream[EmbeddingResult]:  # fmt: skip
        """Blocking :meth:`Client.stream_embed_batch`, as :meth:`stream_batch`."""
        client = self._check_open()
        return SyncBatchStream(
            self._loop, lambda: client.stream_embed_batch(inputs, **keywords),
            client.limits.concurrency, functools.partial(_frames.progress_bar, progress, inputs),
        )  # fmt: skip

    def chat_stream(self, messages: Any, **keywords: Any) -> SyncChatStream:
        """Blocking :meth:`Client.chat_stream` (its arguments)::

            with client.chat_stream(messages) as stream:
                for chunk in stream:
                    print(chunk.delta, end="")
            print(stream.completion.text)

        Entering the block sends the request and waits for the first chunk (retrying
        per the policy), as ``async with`` does.
        """
        client = self._check_open()
        return SyncChatStream(self._loop, lambda: client.chat_stream(messages, **keywords))

    # ------------------------------------------------------------------ DataFrames

    def chat_frame(
        self,
        data: pandas.DataFrame | pandas.Series[Any],
        column: str = "prompt",
        *,
        system: str | None = None,
        id_column: str | None = None,
        progress: bool = False,
        **keywords: Any,
    ) -> pandas.DataFrame:
        """Complete a DataFrame's column of prompts; a frame of results, row for row.

        ::

            out = client.chat_frame(df, column="prompt", temperature=0)
            df = df.join(out)                   # text, ok, error, ... next to the prompts

        Args:
            data: a DataFrame (its ``column`` is read) or a Series.
            column: the column of prompts: strings (each one user message), message
                lists, or :class:`ChatRequest` s.
            system: a system message put before each string prompt.
            id_column: a column whose values become the requests' ``custom_id``.
            progress, keywords: as :meth:`chat_batch`.

        Returns:
            :func:`results_frame` of the results, indexed as ``data``.  Needs
            ``paradigm-trio[dataframe]`` (pandas).
        """
        requests, index = _frames.chat_inputs(data, column, system=system, id_column=id_column)
        results = self.chat_batch(requests, progress=progress, **keywords)
        return _frames.results_frame(results, index=index)

    def embed_frame(
        self,
        data: pandas.DataFrame | pandas.Series[Any],
        column: str = "text",
        *,
        progress: bool = False,
        **keywords: Any,
    ) -> pandas.DataFrame:
        """Embed a DataFrame's column of texts; a frame of results, row for row.

        The frame has an ``embedding`` column (one numpy vector per row, ``None`` where
        it failed) and the columns of :func:`results_frame`;
        ``pt.embeddings_array(results)`` gives the vectors as one 2-D array instead.
        ``progress`` and ``keywords`` are those of :meth:`embed_batch`.
        """
        texts, index = _frames.column_of(data, column)
        results = self.embed_batch(texts, progress=progress, **keywords)
        return _frames.results_frame(results, index=index)


class SyncFiles:
    """The documents of the API, for blocking code: :attr:`SyncClient.files`.

    ::

        with pt.SyncClient() as client:
            info = client.files.upload("report.pdf", collection_type="private")
            info = client.files.wait(info.id)       # until it is processed
            print([f.filename for f in client.files.list()])
            client.files.delete(info.id)

    Its methods are those of :class:`Files` (``Client.files``), with their arguments,
    results and errors, each run on the client's loop as the other blocking methods are
    (a ``KeyboardInterrupt`` cancels the call).
    """

    upload = _blocking_files(Files.upload)
    get = _blocking_files(Files.get)
    list = _blocking_files(Files.list)
    delete = _blocking_files(Files.delete)
    wait = _blocking_files(Files.wait)

    def __init__(self, sync: SyncClient) -> None:
        self._sync = sync

    def __repr__(self) -> str:
        return f"<SyncFiles of {self._sync!r}>"


class EmbedKeywords(BatchKeywords, total=False):
    """The keywords of :meth:`Client.embed_batch` (type checking only)."""

    dimensions: int | None
    encoding_format: EncodingFormat | None
    pack_inputs: int
    pack_tokens: int
    options: BatchOptions | None


class _Finished(list[Any]):
    """A blocking batch's results: appended on the loop, read in the caller's thread.

    They are read once the batch's job has ended, except after an interrupt whose cancel
    gave up waiting for it (``CANCEL_WAIT``): :meth:`close` then takes those added so far,
    and the loop adds no more (a result finished after it reaches nobody).
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._closed = False

    def add(self, result: Any) -> None:
        """Keep ``result`` (on the loop), unless :meth:`close` was called."""
        with self._lock:
            if not self._closed:
                self.append(result)

    def close(self) -> list[Any]:
        """The results added so far (a copy); none is added after."""
        with self._lock:
            self._closed = True
            return list(self)


def _stop(loop: Loop, pid: int) -> None:
    """End a client's loop (:meth:`SyncClient.close`, or its finalizer), unless this is a
    forked child, which has no copy of the loop's thread."""
    if os.getpid() == pid:
        loop.stop(CLOSE_WAIT)


def _in_order(results: Iterable[Any]) -> list[Any]:
    return sorted(results, key=lambda r: r.index)


# help(pt.SyncClient) and IDEs show Client's arguments, which it takes.
SyncClient.__init__.__signature__ = inspect.signature(Client.__init__)  # type: ignore[attr-defined]
