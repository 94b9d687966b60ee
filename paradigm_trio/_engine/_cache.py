"""A response cache on disk: :class:`ResponseCache` (what the user configures) and
:class:`CacheStore` (one client's open cache, which the batch engine reads and writes).

SQLite from the standard library, in WAL mode with a busy timeout, so that several
processes (the workers of one job, a notebook and a script) share one file: readers never
wait for a writer, and writers take turns.  Its calls block, so they run on a worker thread
(``trio.to_thread.run_sync``), one at a time per client (a ``CapacityLimiter`` of 1: the
one connection is never used by two threads at once).

An entry's key is a SHA-256 of the base URL's host and port and the request's
``Identity`` (the endpoint, its path and the canonical body): never the API key, which is
neither in the body nor in the URL's host.  Its value is the answer's JSON and request id,
with the wall-clock time it expires (the entries outlive the process, so trio's clock,
which starts anew in each run, cannot date them).  Only successful, complete answers are
stored; a failure of the cache itself (a locked or full disk) is logged and the request is
sent as if there were no cache: it never costs an answer.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import trio

from .. import _log
from .._errors import ConfigurationError

__all__ = ["CacheStore", "DEFAULT_CACHE_TTL", "ResponseCache"]

DEFAULT_CACHE_TTL: Final = 7 * 24 * 3600.0
"""Seconds a cached answer is served (a week)."""

BUSY_TIMEOUT: Final = 10.0
"""Seconds a call waits for another process's write before it gives up (then: a miss)."""

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS answers ("
    " key BLOB PRIMARY KEY, answer TEXT NOT NULL, stored REAL NOT NULL, expires REAL)"
)


def _now() -> float:
    """Wall-clock seconds (see the module's docstring: entries outlive the process)."""
    return time.time()


@dataclass(frozen=True, slots=True)
class ResponseCache:
    """A response cache on disk, for :class:`Client`'s ``cache=`` (opt-in).

    ``Client(cache=pt.ResponseCache("answers.sqlite"))``: a batch's deterministic requests
    (those ``BatchOptions.dedupe`` shares by default: chat with ``temperature=0`` or a
    ``seed``, every embeddings and tokenize request) are looked up before they are sent,
    and their successful answers stored.  A result answered from it has ``cached=True``
    and no attempts; ``BatchStatistics.cached`` counts them.  :meth:`Client.chat` reads
    and fills it too (``ChatCompletion.cached``).  See the batching how-to.

    Attributes:
        path: the SQLite file (made if missing; its folder must exist).  Several
            processes may use one file at once.
        ttl: seconds an answer is served after it was stored (default
            :data:`DEFAULT_CACHE_TTL`, a week); ``None``: forever.  Expired answers are
            deleted when a client opens the file.
    """

    path: str | os.PathLike[str]
    ttl: float | None = DEFAULT_CACHE_TTL

    def __post_init__(self) -> None:
        if not isinstance(self.path, str | os.PathLike) or not os.fspath(self.path):
            raise ValueError(f"ResponseCache.path must be a file path, got {self.path!r}")
        if self.ttl is not None and (
            isinstance(self.ttl, bool)
            or not isinstance(self.ttl, int | float)
            or not self.ttl >= 0
            or math.isinf(self.ttl)
        ):
            raise ValueError(
                f"ResponseCache.ttl must be a finite number of seconds >= 0 or None, "
                f"got {self.ttl!r}"
            )


class CacheStore:
    """One client's open :class:`ResponseCache`, for the answers of one server (``scope``:
    the base URL's host and port)."""

    def __init__(self, config: ResponseCache, scope: str) -> None:
        self.config = config
        self.path = os.fspath(config.path)
        self._scope = scope.encode("utf-8", "surrogatepass") + b"\x1f"
        self._limiter = trio.CapacityLimiter(1)
        self._db: sqlite3.Connection | None = None
        self._closed = False

    def key(self, identity: bytes) -> bytes:
        """The entry's key for a request's identity (its host included)."""
        return hashlib.sha256(self._scope + identity).digest()

    async def open(self) -> None:
        """Open the file now (made if missing); ``ConfigurationError`` if it cannot be."""
        await trio.to_thread.run_sync(self._connect, limiter=self._limiter)

    async def get(self, keys: Sequence[bytes]) -> dict[bytes, tuple[Any, str | None]]:
        """The answers stored and not expired, by key: ``(its JSON, its request id)``."""
        if not keys:
            await trio.lowlevel.checkpoint()
            return {}
        try:
            return await trio.to_thread.run_sync(self._get, keys, limiter=self._limiter)
        except sqlite3.Error as exc:
            _log.say(_log.WARNING, "cache_failed", "response cache: read failed (%s)", exc)
            return {}

    async def put(self, entries: Sequence[tuple[bytes, Mapping[str, Any], str | None]]) -> None:
        """Store answers: ``(key, its JSON, its request id)`` each."""
        if not entries:
            await trio.lowlevel.checkpoint()
            return
        try:
            await trio.to_thread.run_sync(self._put, entries, limiter=self._limiter)
        except (sqlite3.Error, TypeError, ValueError) as exc:
            _log.say(_log.WARNING, "cache_failed", "response cache: write failed (%s)", exc)

    async def aclose(self) -> None:
        """Close the file (idempotent)."""
        self._closed = True
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._close, limiter=self._limiter)

    # Each runs on a worker thread, one at a time (the limiter).

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        if self._closed:
            raise RuntimeError("this Client is closed; create a new one")
        try:
            db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(_SCHEMA)
                db.execute("DELETE FROM answers WHERE expires <= ?", (_now(),))
            except BaseException:
                db.close()
                raise
        except sqlite3.Error as exc:
            raise ConfigurationError(
                f"the response cache {self.path!r} cannot be opened: {exc} (is it an "
                "SQLite file, in a folder that exists and that you may write?)"
            ) from None
        self._db = db
        return db

    def _get(self, keys: Sequence[bytes]) -> dict[bytes, tuple[Any, str | None]]:
        db = self._connect()
        marks = ",".join("?" * len(keys))
        rows = db.execute(
            f"SELECT key, answer FROM answers WHERE key IN ({marks})"
            " AND (expires IS NULL OR expires > ?)",
            (*keys, _now()),
        ).fetchall()
        found: dict[bytes, tuple[Any, str | None]] = {}
        for key, text in rows:
            try:
                stored = json.loads(text)
                found[bytes(key)] = (stored["raw"], stored.get("request_id"))
            except (ValueError, KeyError, TypeError):
                continue  # not an entry this library wrote: a miss
        return found

    def _put(self, entries: Sequence[tuple[bytes, Mapping[str, Any], str | None]]) -> None:
        db = self._connect()
        now = _now()
        ttl = self.config.ttl
        expires = None if ttl is None else now + ttl
        rows = [
            (key, json.dumps({"raw": raw, "request_id": rid}, ensure_ascii=False), now, expires)
            for key, raw, rid in entries
        ]
        with db:  # one transaction
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT OR REPLACE INTO answers (key, answer, stored, expires) VALUES (?,?,?,?)",
                rows,
            )

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
