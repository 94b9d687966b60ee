"""The CLI's file safety, in-process: the output lock and atomic rewrites.

The two-process behaviour is in ``tests/integration/test_cli_locking.py``; here the
pieces are driven directly (``flock`` locks two descriptors of one process against each
other, as it does two processes).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from paradigm_trio.cli import _batchfile
from paradigm_trio.cli._batchfile import read_done
from paradigm_trio.cli._lock import LockUnavailable, OutputLock

COMMAND = ["batch", "in.jsonl", "-o", "o.jsonl", "--base-url", "https://me:s3cret@h/api/v2"]


def test_a_second_lock_is_refused_and_says_who_holds_it(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with OutputLock(out, COMMAND).acquire():
        with pytest.raises(LockUnavailable) as refused:
            OutputLock(out, ["batch"]).acquire()
        info = json.loads((tmp_path / "o.jsonl.lock").read_text())
    message = str(refused.value)
    assert f"pid {os.getpid()} on {socket.gethostname()}" in message
    assert f"started {info['started']}" in message
    assert "--base-url https://me:***@h/api/v2" in message
    assert "s3cret" not in message + json.dumps(info)
    assert not (tmp_path / "o.jsonl.lock").exists()  # removed on release


def test_waiting_gives_up_after_the_timeout(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    notes: list[str] = []
    with OutputLock(out, COMMAND).acquire():
        t0 = time.monotonic()
        with pytest.raises(LockUnavailable, match=r"gave up waiting after 0\.5s"):
            OutputLock(out, COMMAND).acquire(wait=True, timeout=0.5, on_wait=notes.append)
        assert time.monotonic() - t0 >= 0.5
    assert len(notes) == 1
    assert f"pid {os.getpid()}" in notes[0]


def test_a_waiter_gets_the_lock_its_holder_releases(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    first = OutputLock(out, COMMAND).acquire()
    second = OutputLock(out, COMMAND)
    waiting = threading.Event()
    thread = threading.Thread(
        target=second.acquire, kwargs={"wait": True, "on_wait": lambda _: waiting.set()}
    )
    thread.start()
    assert waiting.wait(10)
    first.release()
    thread.join(10)
    assert not thread.is_alive()
    with second, pytest.raises(LockUnavailable):  # the file at the path is what it locked
        OutputLock(out, COMMAND).acquire()


def test_a_stale_lock_file_does_not_block(tmp_path: Path) -> None:
    lock_file = tmp_path / "o.jsonl.lock"
    for stale in (b'{"pid": 999999, "host": "gone", "started": "x", "command": "y"}', b"\0\xff"):
        lock_file.write_bytes(stale)
        with OutputLock(tmp_path / "o.jsonl", COMMAND).acquire():
            assert json.loads(lock_file.read_text())["pid"] == os.getpid()


def test_a_lock_file_that_cannot_be_made_is_a_clear_refusal(tmp_path: Path) -> None:
    (tmp_path / "o.jsonl.lock").mkdir()
    with pytest.raises(LockUnavailable, match=r"cannot create the lock file .*o\.jsonl\.lock"):
        OutputLock(tmp_path / "o.jsonl", COMMAND).acquire()


def write_records(path: Path, *failed: bool) -> None:
    path.write_text(
        "".join(
            json.dumps({"custom_id": f"r{i}", "error": {"code": "x"} if bad else None}) + "\n"
            for i, bad in enumerate(failed)
        )
    )


def test_a_rewrite_keeps_permissions_and_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real.jsonl"
    write_records(real, False, True, False)
    real.chmod(0o600)
    link = tmp_path / "o.jsonl"
    link.symlink_to(real)
    done, dropped = read_done(link, keep_failed=False)
    assert (done, dropped) == ({"r0", "r2"}, 1)
    assert link.is_symlink()
    assert [json.loads(line)["custom_id"] for line in real.read_text().splitlines()] == ["r0", "r2"]
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.jsonl", "real.jsonl"]


@pytest.mark.parametrize("when", ["while-read", "after-read"])
def test_a_rewrite_never_drops_what_another_writer_appended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    out = tmp_path / "o.jsonl"
    write_records(out, False, True)
    passes = 0
    records = _batchfile._records

    def append() -> None:
        with out.open("ab") as f:
            f.write(b'{"custom_id": "late", "error": null}\n')

    def appending_meanwhile(path: Path) -> Iterator[tuple[bytes, str | None, bool]]:
        nonlocal passes
        passes += 1
        for i, item in enumerate(records(path)):
            if passes == 2 and i == 0 and when == "while-read":
                append()
            yield item
        if passes == 2 and when == "after-read":
            append()

    monkeypatch.setattr(_batchfile, "_records", appending_meanwhile)
    if when == "while-read":  # read with the rest, and kept
        assert read_done(out, keep_failed=False) == ({"r0", "late"}, 1)
        want = ["r0", "late"]
    else:  # too late to be read: the rewrite is abandoned
        with pytest.raises(_batchfile.InputError, match="changed while it was being rewritten"):
            read_done(out, keep_failed=False)
        want = ["r0", "r1", "late"]
    assert [json.loads(line)["custom_id"] for line in out.read_text().splitlines()] == want
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.jsonl"]


def test_an_interrupted_rewrite_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "o.jsonl"
    write_records(out, True, False, True)
    before = out.read_bytes()
    records = _batchfile._records
    passes = 0

    def interrupted(path: Path) -> Iterator[tuple[bytes, str | None, bool]]:
        nonlocal passes
        passes += 1
        for i, item in enumerate(records(path)):
            if passes == 2 and i == 2:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(_batchfile, "_records", interrupted)
    with pytest.raises(KeyboardInterrupt):
        read_done(out, keep_failed=False)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.jsonl"]


def test_upload_refuses_an_output_another_run_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from paradigm_trio.cli import main

    (tmp_path / "a.txt").write_text("a")
    out = tmp_path / "uploaded.jsonl"
    with OutputLock(out, ["upload"]).acquire():
        code = main(["upload", str(tmp_path / "a.txt"), "-o", str(out), "--mock"])
    assert code == 2
    assert "paradigm-trio upload:" in capsys.readouterr().err
    assert not out.exists() or out.read_text() == ""


@pytest.mark.anyio
@pytest.mark.parametrize("stored", [True, False], ids=["stored", "not-stored"])
async def test_an_upload_that_may_have_been_stored_is_looked_for_before_a_resend(
    tmp_path: Path, stored: bool
) -> None:
    # The client does not resend an upload after a 500 (it is not idempotent): the
    # command lists the server's documents, and sends it again only if it is not there.
    import argparse

    import httpx2

    import paradigm_trio as pt
    from paradigm_trio.cli._upload import Run, State

    from .helpers import make_client

    path = tmp_path / "a.txt"
    path.write_text("hello")
    held: list[dict[str, object]] = []
    posts: list[httpx2.Request] = []

    async def server(request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        if request.method == "GET":
            return httpx2.Response(200, json={"data": held, "next": None})
        posts.append(request)
        doc = {"id": len(posts), "filename": "a.txt", "bytes": 5, "status": "pending"}
        if len(posts) == 1:
            if stored:  # stored, then the answer was lost
                held.append(doc)
            return httpx2.Response(500)
        return httpx2.Response(201, json=doc)

    with (tmp_path / "out").open("wb") as out, (tmp_path / "journal").open("wb") as journal:
        async with make_client(server, timeouts=pt.Timeouts.none()) as client:
            run = Run(client, argparse.Namespace(quiet=True), {}, State(), out, journal, 1)
            file = await run._upload(path, "d" * 64, 5)
    assert (file["id"], len(posts)) == ((1, 1) if stored else (2, 2))
    assert run.counts["recovered" if stored else "uploaded"] == 1
