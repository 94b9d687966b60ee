"""Blocking streams: a batch's results, or a completion's chunks, read by a ``for``.

A job on the client's loop (``_loop``) reads the client's async stream and hands each
item to the reader through a :class:`~paradigm_trio._loop.Pipe`, at most ``capacity``
waiting; the ``with`` block starts the job and cancels it on leaving.  Nothing here knows
the client: ``_sync`` hands each stream the function that opens the client's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Self, TypeVar

import trio

from ._endpoints._completion import ChatCompletion, ChatCompletionChunk
from ._engine._batch_options import BatchStatistics
from ._loop import Job, Loop, Pipe

__all__ = ["SyncBatchStream", "SyncChatStream"]

R = TypeVar("R")


class _Feed(Generic[R]):
    """Items a job on the loop produces, read by a blocking ``for`` in a ``with``."""

    def __init__(self, loop: Loop, capacity: int) -> None:
        self._loop = loop
        self._job: Job[Any] = Job(self._produce)
        self._pipe: Pipe[Any] = Pipe(loop, self._job, capacity)
        self._entered = False
        self._ended = False
        self._final: Any = None

    async def _produce(self) -> Any:
        raise NotImplementedError

    def _start(self) -> None:
        if threading.current_thread() is self._loop.thread:
            raise RuntimeError("a SyncClient's stream cannot be read on the client's own thread")
        if self._entered:
            raise RuntimeError("a stream can be entered once")
        self._entered = True
        self._loop.submit(self._job)

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._loop.cancel(self._job)
        finally:
            self._leave()

    def _leave(self) -> None:
        """What leaving the block does besides cancelling (nothing, here)."""

    def __iter__(self) -> Self:
        return self

    def _next(self) -> Any:
        if not self._entered:
            raise RuntimeError("use the stream in a with block: with ... as stream:")
        if self._ended:
            raise StopIteration
        try:
            item = self._pipe.get()
        except BaseException:
            self._loop.cancel(self._job)
            raise
        if item is Pipe.END:
            self._ended = True
            self._final = self._job.future.result()  # the job's error, if it failed
            raise StopIteration
        return item


class SyncBatchStream(_Feed[R]):
    """The results of :meth:`SyncClient.stream_batch` (or ``stream_embed_batch``), in
    completion order: ``with ... as results: for result in results``.

    With ``on_error="raise"``, the loop raises :class:`BatchError` after the failed
    result.  ``KeyboardInterrupt`` in the loop body or while waiting cancels the batch.
    """

    def __init__(
        self,
        loop: Loop,
        open_stream: Callable[[], AbstractAsyncContextManager[Any]],
        capacity: int,
        make_bar: Callable[[], Any],
    ) -> None:
        super().__init__(loop, capacity)
        self._open = open_stream
        self._stream: Any = None
        self._last: BatchStatistics | None = None
        self._make_bar = make_bar
        self._bar: Any = None

    async def _produce(self) -> BatchStatistics:
        async with self._open() as stream:
            self._stream = stream
            try:
                async for result in stream:
                    await self._pipe.put(result)
            finally:
                self._last = stream.statistics()
            return self._last

    def __enter__(self) -> Self:
        bar = self._make_bar()  # first: if it raises, nothing has started
        try:
            self._start()
        except BaseException:  # nothing started: no __exit__ will close the bar
            if bar is not None:
                bar.close()
            raise
        self._bar = bar
        return self

    def _leave(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __next__(self) -> R:
        result: R = self._next()
        if self._bar is not None:
            self._bar.update(1)
        return result

    def statistics(self) -> BatchStatistics:
        """A frozen snapshot of the batch's counters (the final ones once it has ended)."""
        if self._job.future.done() and self._last is not None:
            return self._last  # the final ones (ended, failed or cancelled)
        if self._stream is None:
            raise RuntimeError("the batch has not started")
        now: BatchStatistics = trio.from_thread.run_sync(
            self._stream.statistics, trio_token=self._loop.token
        )
        return now


_OPENED = object()


class SyncChatStream(_Feed[ChatCompletionChunk]):
    """A streamed chat completion, blocking: :meth:`SyncClient.chat_stream`.

    ``with client.chat_stream(messages) as stream: for chunk in stream`` yields
    :class:`ChatCompletionChunk` s; afterwards :attr:`completion` is the assembled
    completion.  Leaving the block early closes the response.
    """

    def __init__(
        self, loop: Loop, open_stream: Callable[[], AbstractAsyncContextManager[Any]]
    ) -> None:
        super().__init__(loop, capacity=64)
        self._open = open_stream

    async def _produce(self) -> ChatCompletion:
        async with self._open() as stream:
            await self._pipe.put(_OPENED)
            async for chunk in stream:
                await self._pipe.put(chunk)
            return stream.completion  # type: ignore[no-any-return]

    def __enter__(self) -> Self:
        self._start()
        try:
            first = self._pipe.get()
        except BaseException:
            self._loop.cancel(self._job)
            raise
        if first is Pipe.END:
            self._ended = True
            self._job.future.result()  # raises why it could not open
        return self

    def __next__(self) -> ChatCompletionChunk:
        chunk: ChatCompletionChunk = self._next()
        return chunk

    @property
    def completion(self) -> ChatCompletion:
        """The assembled :class:`ChatCompletion`, once the stream has been read to its end.

        Raises:
            RuntimeError: the stream has not been read to its end.
        """
        if not self._ended or self._final is None:
            raise RuntimeError(
                "the stream has not been read to its end: iterate it completely "
                "before reading .completion"
            )
        return self._final  # type: ignore[no-any-return]
