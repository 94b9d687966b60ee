"""``paradigm-trio upload DIR_OR_GLOB ... -o UPLOADED.jsonl``: ingest files, resumably.

Each file is identified by the SHA-256 of its content and uploaded once: a second file
with the same content is recorded with the first one's document (``"duplicate"``).
``UPLOADED.jsonl`` gets one line per file when it is done (``path``, ``sha256``,
``file_id``, ``status``, ``bytes``; with ``--wait``, the status once processed), written
whole and flushed.  A journal beside it (``UPLOADED.jsonl.journal``) says which uploads
were started and which the server accepted, so that a rerun after a crash, ``kill -9`` or
Ctrl-C skips the files done, finishes those accepted (waits for them, writes their
line), and looks for those started but not confirmed among the server's documents
(same name and size, not yet claimed) before sending them again: the server then holds
each file once.  The upload's ``Idempotency-Key`` derives from the content's hash too.
Within a run likewise: an upload that failed once it may have been stored (a 5xx, a
timeout or a reset while it was answered: the client does not resend it, as it is not
idempotent) is looked for among the server's documents, then sent again if it is not
there (at most twice).

The files are hashed and sent concurrently (``--concurrency``), under the client's rate
limits; a file is read from disk as it is sent, never whole.  One run per output: a run
holds the output's lock (``UPLOADED.jsonl.lock``, as ``batch`` does); another exits with
code 2.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import trio

import paradigm_trio as pt

from ._atomic import replacing
from ._embedded import server_of
from ._lock import LockUnavailable, OutputLock
from ._network import add_network_arguments, network_options
from ._text import dumps, loads

__all__ = ["add_upload_parser", "run_upload"]

_HASH_PIECE = 1024 * 1024


def add_upload_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``upload`` subcommand."""
    up = sub.add_parser(
        "upload",
        help="upload files (folders, globs) as documents, resumably, each once",
        description=(
            "Upload every file named (a folder: every file under it; a glob, ** included) "
            "to POST /files, concurrently under the limits, each content once (SHA-256), "
            "and append one JSON line per file to the output (path, sha256, file_id, "
            "status, bytes). Rerun the same command after a crash or Ctrl-C to resume."
        ),
    )
    up.add_argument("paths", nargs="+", metavar="DIR_OR_GLOB", help="folders, files or globs")
    up.add_argument("-o", "--output", metavar="UPLOADED.jsonl", required=True,
                    help="the JSONL of uploaded files (read back on resume)")  # fmt: skip
    up.add_argument("--collection-type", choices=("private", "company", "workspace"),
                    help="where the documents go (the API's collection_type)")  # fmt: skip
    up.add_argument("--workspace-id", type=int, metavar="N",
                    help="the workspace, with --collection-type workspace")  # fmt: skip
    up.add_argument("--collection", type=int, metavar="N", help="a collection id")
    up.add_argument("--field", action="append", default=[], metavar="NAME=VALUE",
                    help="another form field (chunk_size=512...), repeatable")  # fmt: skip
    up.add_argument("--wait", action="store_true",
                    help="wait until each document is processed (status embedded)")  # fmt: skip
    up.add_argument("--wait-timeout", type=float, default=600.0, metavar="S",
                    help="with --wait, the most seconds to wait for a document (600)")  # fmt: skip
    up.add_argument("--concurrency", type=int, default=8, metavar="N",
                    help="files uploaded at once (default 8)")  # fmt: skip
    up.add_argument("--rpm", type=float, metavar="N", help="at most N requests a minute")
    up.add_argument("--mock", action="store_true",
                    help="upload to an embedded mock server (no key, no network)")  # fmt: skip
    up.add_argument("--base-url", metavar="URL", help="the API root (else PARADIGM_BASE_URL)")
    up.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_network_arguments(up)


class Refused(Exception):
    """A reason not to start (exit code 2)."""


def files_of(patterns: list[str]) -> list[Path]:
    """Every file the arguments name, once each, in a stable order."""
    found: dict[str, Path] = {}
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            matches = [p for p in sorted(path.rglob("*")) if p.is_file()]
        elif path.is_file():
            matches = [path]
        else:
            matches = [Path(p) for p in sorted(glob.glob(pattern, recursive=True))]
            matches = [p for p in matches if p.is_file()]
            if not matches:
                raise Refused(f"{pattern}: no such file or folder, and no file matches it")
        for match in matches:
            found.setdefault(str(match.resolve()), match)
    return list(found.values())


def _form(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for item in args.field:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise Refused(f"--field {item!r}: write NAME=VALUE")
        fields[name] = value
    given = {"collection_type": args.collection_type, "workspace_id": args.workspace_id,
             "collection": args.collection}  # fmt: skip
    fields.update({k: v for k, v in given.items() if v is not None})
    if fields.get("collection_type") == "workspace" and "workspace_id" not in fields:
        raise Refused("--collection-type workspace needs --workspace-id")
    return fields


def _sha256(path: Path) -> tuple[str, int]:
    """The content's SHA-256 and the file's size (read in pieces)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while piece := f.read(_HASH_PIECE):
            digest.update(piece)
            size += len(piece)
    return digest.hexdigest(), size


@dataclass
class State:
    """What the output and the journal say: lines done, uploads accepted or started."""

    done_paths: set[str] = field(default_factory=set)
    done_hashes: dict[str, Any] = field(default_factory=dict)  # sha256 -> file_id
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # sha256 -> file
    started: dict[str, str] = field(default_factory=dict)  # sha256 -> path

    @classmethod
    def read(cls, output: Path, journal: Path) -> State:
        """The state of earlier runs; the output's failed lines are removed (those files
        run again), and so is a partial last line."""
        state = cls()
        kept: list[dict[str, Any]] = []
        lines = 0
        for record in _records(output):
            lines += 1
            if record.get("file_id") is None:
                continue
            kept.append(record)
            state.done_paths.add(record.get("path", ""))
            state.done_hashes.setdefault(record.get("sha256", ""), record["file_id"])
        if output.exists() and (len(kept) < lines or not _ends_whole(output)):
            with replacing(output) as out:
                for record in kept:
                    _append(out, record)
        for record in _records(journal):
            if record.get("event") == "accepted":
                state.accepted[record["sha256"]] = record["file"]
            elif record.get("event") == "started":
                state.started[record["sha256"]] = record["path"]
        return state


def _ends_whole(path: Path) -> bool:
    """Whether ``path`` is empty or ends with a newline (no line cut by a crash)."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _records(path: Path) -> Iterator[dict[str, Any]]:
    """The complete JSON lines of ``path`` (a partial last line, from a crash, skipped)."""
    if not path.exists():
        return
    with path.open("rb") as f:
        for raw in f:
            try:
                record = loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


_RESENDS = 2
"""Uploads sent again, each after looking for the document among the server's, when an
upload failed once it may have been stored (the client does not resend it)."""


def _may_be_stored(error: pt.APIError) -> bool:
    """Whether a failed upload may have been stored: its last attempt may have reached the
    server, and its answer, if any, was not a refusal (a 4xx)."""
    last = error.attempts[-1] if error.attempts else None
    if last is None or not last.reached:
        return False
    return last.status is None or last.status >= 500


def _append(out: IO[bytes], record: dict[str, Any]) -> None:
    out.write(dumps(record).encode("utf-8") + b"\n")
    out.flush()


@dataclass
class Run:
    """One run: the client, the files, the output and the journal, and the counts."""

    client: pt.Client
    args: argparse.Namespace
    fields: dict[str, Any]
    state: State
    out: IO[bytes]
    journal: IO[bytes]
    total: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("uploaded", "duplicate", "recovered", "skipped", "failed", "processed"), 0))  # fmt: skip
    sent_bytes: int = 0
    written: int = 0
    claimed: set[Any] = field(default_factory=set)
    server_files: list[pt.FileInfo] | None = None
    hashing: dict[str, trio.Event] = field(default_factory=dict)

    def say(self, message: str) -> None:
        if not self.args.quiet:
            print(message, file=sys.stderr)

    async def one(self, path: Path, limiter: trio.CapacityLimiter) -> None:
        """Hash, upload (or find), wait if asked, and record one file."""
        async with limiter:
            try:
                record = await self._one(path)
            except (pt.APIError, pt.InvalidRequestError, pt.FileProcessingError, OSError) as exc:
                self.counts["failed"] += 1
                record = {"path": str(path), "sha256": None, "file_id": None, "status": "error",
                          "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip
                self.say(f"failed: {path}: {exc}")
            _append(self.out, record)
            self.written += 1
            done = self.written + self.counts["skipped"]
            self.say(f"[{done}/{self.total}] {record['status']}: {path}")

    async def _one(self, path: Path) -> dict[str, Any]:
        digest, size = await trio.to_thread.run_sync(_sha256, path)
        base = {"path": str(path), "sha256": digest, "bytes": size}
        # The same content twice in one run: the second waits for the first.
        first = self.hashing.get(digest)
        if first is not None:
            await first.wait()
        if digest in self.state.done_hashes:
            self.counts["duplicate"] += 1
            return {**base, "file_id": self.state.done_hashes[digest], "status": "duplicate"}
        self.hashing[digest] = trio.Event()
        try:
            info = await self._upload(path, digest, size)
            self.state.done_hashes[digest] = info["id"]
        finally:
            self.hashing[digest].set()
        status = info.get("status")
        if self.args.wait:
            waited = await self.client.files.wait(info["id"], timeout=self.args.wait_timeout)
            status = waited.status
            self.counts["processed"] += 1
        return {**base, "file_id": info["id"], "status": status}

    async def _upload(self, path: Path, digest: str, size: int) -> dict[str, Any]:
        """The document for this content: accepted before, found on the server, or sent."""
        accepted = self.state.accepted.get(digest)
        if accepted is not None:
            self.counts["recovered"] += 1
            return accepted
        if digest in self.state.started:
            found = await self._find(path, size)
            if found is not None:
                self.counts["recovered"] += 1
                _append(self.journal, {"event": "accepted", "sha256": digest, "file": found})
                return found
        _append(self.journal, {"event": "started", "sha256": digest, "path": str(path)})
        upload = await trio.to_thread.run_sync(
            lambda: pt.FileUpload.of(path, fields=self.fields, custom_id=f"sha256:{digest}")
        )
        for resend in range(_RESENDS + 1):
            try:
                info = await self.client.files.upload(upload)
                break
            except pt.APIError as exc:
                if resend == _RESENDS or not _may_be_stored(exc):
                    raise
            # Not resent by the client (an upload is not idempotent): look for it first.
            found = await self._find(path, size, fresh=True)
            if found is not None:
                self.counts["recovered"] += 1
                _append(self.journal, {"event": "accepted", "sha256": digest, "file": found})
                return found
        self.sent_bytes += size
        self.counts["uploaded"] += 1
        file = {**info.raw, "id": info.id, "status": info.status}
        _append(self.journal, {"event": "accepted", "sha256": digest, "file": file})
        return file

    async def _find(self, path: Path, size: int, fresh: bool = False) -> dict[str, Any] | None:
        """A document the server holds for an upload that was started but not confirmed
        (same file name and size, not claimed by another line); ``fresh``: list the
        server's documents again (an upload of this run failed after it may have been
        stored)."""
        if self.server_files is None or fresh:
            self.server_files = await self.client.files.list()
            self.claimed.update(self.state.done_hashes.values())
        for info in self.server_files:
            if info.id in self.claimed or info.filename != path.name:
                continue
            if info.size is not None and info.size != size:
                continue
            self.claimed.add(info.id)
            return {**info.raw, "id": info.id, "status": info.status}
        return None


async def _run(args: argparse.Namespace, paths: list[Path], fields: dict[str, Any],
               state: State, out: IO[bytes], journal: IO[bytes]) -> Run:  # fmt: skip
    todo = [p for p in paths if str(p) not in state.done_paths]
    async with AsyncExitStack() as stack:
        api_key, base_url = await server_of(stack, args, latency="fixed:0")
        client = await stack.enter_async_context(
            pt.Client(
                api_key=api_key,
                base_url=base_url,
                limits=pt.Limits(concurrency=args.concurrency, requests_per_minute=args.rpm),
                **network_options(args),
            )
        )
        run = Run(client, args, fields, state, out, journal, total=len(paths))
        run.counts["skipped"] = len(paths) - len(todo)
        if run.counts["skipped"]:
            run.say(f"Resuming: {run.counts['skipped']} file(s) already done")
        limiter = trio.CapacityLimiter(args.concurrency)
        async with trio.open_nursery() as nursery:
            for path in todo:
                nursery.start_soon(run.one, path, limiter)
    return run


def run_upload(args: argparse.Namespace) -> int:
    """``upload``: exit 0 when every file is uploaded (and processed, with ``--wait``),
    1 when some failed, 2 when refused, 130 when interrupted."""
    output = Path(args.output)
    try:
        if args.concurrency < 1:
            raise Refused("--concurrency must be at least 1")
        fields = _form(args)
        paths = files_of(args.paths)
        if output.is_dir():
            raise Refused(f"{output} is a directory; -o names a file")
    except Refused as exc:
        print(f"paradigm-trio upload: {exc}", file=sys.stderr)
        return 2
    start = time.monotonic()
    journal_path = Path(str(output) + ".journal")
    lock = OutputLock(output, getattr(args, "command_line", sys.argv[1:]))
    try:
        lock.acquire()
    except LockUnavailable as exc:  # another run uploads into this output
        print(f"paradigm-trio upload: {exc}", file=sys.stderr)
        return 2
    try:
        with lock:
            state = State.read(output, journal_path)
            with output.open("ab") as out, journal_path.open("ab") as journal:
                run = trio.run(_run, args, paths, fields, state, out, journal)
    except pt.ConfigurationError as exc:
        print(f"paradigm-trio upload: {exc} (or use --mock)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"paradigm-trio upload: I/O error: {exc}", file=sys.stderr)
        return 2
    c = run.counts
    print(
        f"Done: {c['uploaded']} uploaded, {c['recovered']} recovered from an earlier run, "
        f"{c['duplicate']} duplicate(s), {c['skipped']} already done, {c['failed']} failed"
        + (f", {c['processed']} processed" if args.wait else "")
        + f"; {run.sent_bytes:,} bytes in {time.monotonic() - start:.1f}s. Results: {output}",
        file=sys.stderr,
    )
    return 1 if c["failed"] else 0
