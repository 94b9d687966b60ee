"""``SyncClient``: lifecycle, errors, interrupts, streams, DataFrames, progress.

No sockets: ``httpx2.MockTransport`` answers on the SyncClient's own loop (a thread with
trio's real clock: these tests never sleep on it, they wait for events).
"""

from __future__ import annotations

import _thread
import asyncio
import gc
import json
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import httpx2
import pandas as pd
import pytest
import trio

import paradigm_trio as pt

from .helpers import API_KEY, BASE_URL, MESSAGES, InterruptedHandOver, ok, status

NO_RETRY = pt.RetryPolicy.no_retries()


def loops() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "paradigm-trio SyncClient"]


@pytest.fixture(autouse=True)
def _no_thread_left() -> Iterator[None]:
    before = set(loops())
    yield
    gc.collect()
    assert set(loops()) <= before, "a SyncClient's thread was left running"


def sync_client(handler: Callable[[httpx2.Request], Any], **kwargs: Any) -> pt.SyncClient:
    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("base_url", BASE_URL)
    return pt.SyncClient(transport=httpx2.MockTransport(handler), **kwargs)


def echo(request: httpx2.Request) -> httpx2.Response:
    """A completion whose text is the last message's content."""
    body = json.loads(request.content)
    return ok(text=body["messages"][-1]["content"])


def prompts(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"p{i}"}] for i in range(n)]


class Gate:
    """A transport handler: answers ``free`` requests, then holds every other one until
    the loop cancels it; ``held`` is set when ``hold`` of them are held."""

    def __init__(self, free: int, hold: int = 1) -> None:
        self.free = free
        self.hold = hold
        self.held = threading.Event()
        self.lock = threading.Lock()

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        with self.lock:
            self.free -= 1
            answer = self.free >= 0
        if answer:
            return echo(request)
        with self.lock:
            self.hold -= 1
            if self.hold <= 0:
                self.held.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")


def interrupt_when(event: threading.Event) -> threading.Thread:
    """Interrupt the main thread (as Ctrl-C does) once ``event`` is set."""

    def run() -> None:
        if event.wait(30):
            _thread.interrupt_main()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# ============================================================================ lifecycle


def test_chat_models_and_context_manager() -> None:
    with sync_client(echo) as client:
        assert client.chat(MESSAGES).text == "Hi"
        assert client.closed is False
        assert loops() == [client.thread]
    assert client.closed
    assert not client.thread.is_alive()


def test_models_is_one_line_of_the_general_bridge() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path.endswith("/models")
        return httpx2.Response(200, json={"object": "list", "data": [{"id": "m1"}]})

    with sync_client(handler) as client:
        assert [m.id for m in client.models()] == ["m1"]
        assert pt.SyncClient.models.__doc__ is not None
        assert "Client.models" in pt.SyncClient.models.__doc__


def test_make_request_runs_in_the_callers_thread() -> None:
    with sync_client(echo) as client:
        request = client.make_request(MESSAGES, temperature=0.5, custom_id="a")
        assert (request.temperature, request.custom_id) == (0.5, "a")
        with pytest.raises(pt.InvalidRequestError):
            client.make_request(MESSAGES, temperature=-1)
        assert client.chat_batch([request], options=pt.BatchOptions(max_tokens=5))[0].ok


def test_use_after_close_raises_runtime_error() -> None:
    client = sync_client(echo)
    client.close()
    for call in (
        lambda: client.chat(MESSAGES),
        lambda: client.chat_batch(prompts(2)),
        lambda: client.stream_batch(prompts(2)),
        client.statistics,
        client.__enter__,
    ):
        with pytest.raises(RuntimeError, match="closed"):
            call()


def test_close_is_idempotent_and_with_closes() -> None:
    client = sync_client(echo)
    client.close()
    client.close()
    with sync_client(echo) as other:
        pass
    other.close()
    assert "CLOSED" in repr(other)


def test_configuration_error_starts_no_thread() -> None:
    with pytest.raises(pt.ConfigurationError):
        pt.SyncClient(api_key=API_KEY, base_url="ftp://nowhere")
    assert loops() == []


def test_garbage_collected_client_ends_its_thread() -> None:
    client = sync_client(echo)
    thread = client.thread
    del client
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()


def test_exit_of_the_interpreter_never_waits_for_an_open_client(tmp_path: Any) -> None:
    script = tmp_path / "leave_open.py"
    script.write_text(
        "import httpx2, trio, paradigm_trio as pt\n"
        "async def hang(request):\n"
        "    await trio.sleep_forever()\n"
        f"c = pt.SyncClient(api_key={API_KEY!r}, base_url={BASE_URL!r},\n"
        "                  transport=httpx2.MockTransport(hang))\n"
        "import threading\n"
        "t = threading.Thread(target=c.chat, args=([{'role': 'user', 'content': 'x'}],),\n"
        "                     daemon=True)\n"
        "t.start()\n"
        "print('exiting', flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "exiting\n"


def test_the_key_is_in_no_repr() -> None:
    with sync_client(echo) as client:
        assert API_KEY not in repr(client)
        assert "api_key='***'" in repr(client)
        with client.stream_batch(prompts(1)) as results:
            assert API_KEY not in repr(results)
            list(results)
    assert API_KEY not in repr(client)


# ============================================================================ errors


def test_exceptions_keep_their_types() -> None:
    with sync_client(lambda r: status(401), retry=NO_RETRY) as client:
        with pytest.raises(pt.AuthenticationError) as info:
            client.chat(MESSAGES)
        assert API_KEY not in str(info.value)
        with pytest.raises(pt.InvalidRequestError):
            client.chat([{"role": "user"}])
        with pytest.raises(ValueError, match="on_error"):
            client.chat_batch(prompts(1), on_error="explode")


def test_batch_error_carries_the_finished_results() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if json.loads(request.content)["messages"][-1]["content"] == "p3":
            return status(400)
        return echo(request)

    with sync_client(handler, retry=NO_RETRY, limits=pt.Limits(concurrency=1)) as client:
        with pytest.raises(pt.BatchError) as info:
            client.chat_batch(prompts(10), on_error="raise")
    assert [r.index for r in info.value.results] == [0, 1, 2, 3]
    assert not info.value.results[3].ok


def test_a_systematic_failure_carries_the_held_failures() -> None:
    with sync_client(lambda r: status(401), retry=NO_RETRY, limits=pt.Limits(concurrency=2)) as c:
        with pytest.raises(pt.SystematicFailureError) as info:
            c.chat_batch(prompts(100))
    assert info.value.status == 401
    assert len(info.value.results) == pt.DEFAULT_SYSTEMATIC_FAILURES
    assert [r.index for r in info.value.results] == sorted(r.index for r in info.value.results)


def test_a_call_running_when_the_client_closes_raises_runtime_error() -> None:
    gate = Gate(free=0)
    client = sync_client(gate)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.chat(MESSAGES)
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert gate.held.wait(30)
    client.close()
    caller.join(30)
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "closed" in str(errors[0])


def test_a_call_from_the_clients_own_thread_is_refused() -> None:
    client: pt.SyncClient
    refused: list[BaseException] = []

    def on_event(event: pt.Event) -> None:
        if isinstance(event, pt.RequestFinished) and not refused:
            try:
                client.chat(MESSAGES)
            except RuntimeError as exc:
                refused.append(exc)

    with sync_client(echo, on_event=on_event) as client:
        assert client.chat(MESSAGES).text == "Hi"
    assert len(refused) == 1
    assert "own thread" in str(refused[0])


def test_a_forked_child_is_told_to_make_its_own_client() -> None:
    import multiprocessing

    with sync_client(echo) as client:
        context = multiprocessing.get_context("fork")
        parent, child = context.Pipe()

        def in_child() -> None:
            try:
                client.chat(MESSAGES)
            except RuntimeError as exc:
                child.send(str(exc))
            client.close()  # nothing to stop in the child: the parent's loop goes on

        process = context.Process(target=in_child)
        with warnings.catch_warnings():  # 3.12+: forking a process that has threads
            warnings.simplefilter("ignore", DeprecationWarning)
            process.start()
        process.join(30)
        assert parent.poll(0)
        assert "another process" in parent.recv()
        assert client.chat(MESSAGES).text == "Hi"


def test_every_entry_point_refuses_a_forked_child_at_once() -> None:
    # Each call in the child, bounded by an alarm (SIGALRM ends a child that hangs).
    import os
    import signal

    entries: dict[str, Callable[[pt.SyncClient], object]] = {
        "chat": lambda c: c.chat(MESSAGES),
        "embed": lambda c: c.embed("x"),
        "models": lambda c: c.models(),
        "make_request": lambda c: c.make_request(MESSAGES),
        "statistics": lambda c: c.statistics(),
        "chat_batch": lambda c: c.chat_batch(prompts(2)),
        "embed_batch": lambda c: c.embed_batch(["x"]),
        "stream_batch": lambda c: c.stream_batch(prompts(2)),
        "stream_embed_batch": lambda c: c.stream_embed_batch(["x"]),
        "chat_stream": lambda c: c.chat_stream(MESSAGES),
        "chat_frame": lambda c: c.chat_frame(pd.DataFrame({"prompt": ["x"]})),
        "enter": lambda c: c.__enter__(),
    }
    with sync_client(echo) as client:
        read, write = os.pipe()
        with warnings.catch_warnings():  # 3.12+: forking a process that has threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            signal.alarm(10)
            told = {}
            for name, entry in entries.items():
                try:
                    entry(client)
                    told[name] = "returned"
                except RuntimeError as exc:
                    told[name] = "refused" if "another process" in str(exc) else str(exc)
            os.write(write, json.dumps(told).encode())
            os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read) as answer:
            told = json.loads(answer.read() or "{}")
        assert os.WIFEXITED(status), "the child hung (ended by its alarm)"
        assert told == dict.fromkeys(entries, "refused")
        assert client.chat(MESSAGES).text == "Hi"  # the parent's client goes on


def test_statistics_of_a_client_whose_loop_ended_says_closed() -> None:
    client = sync_client(echo)
    client._loop.stop(30)  # as if closed from another thread meanwhile
    with pytest.raises(RuntimeError, match="closed"):
        client.statistics()
    client.close()


def test_make_request_after_close_raises_runtime_error() -> None:
    client = sync_client(echo)
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.make_request(MESSAGES)


def test_the_constructor_shows_clients_arguments() -> None:
    import inspect

    assert "limits" in inspect.signature(pt.SyncClient).parameters


# ============================================================================ batches


def test_chat_batch_in_input_order_with_statistics() -> None:
    with sync_client(echo) as client:
        results = client.chat_batch(prompts(50))
    assert [r.completion.text for r in results if r.completion] == [f"p{i}" for i in range(50)]
    assert results.statistics.succeeded == 50


def test_interrupt_cancels_the_batch_and_keeps_what_finished() -> None:
    gate = Gate(free=5, hold=4)
    with sync_client(gate, limits=pt.Limits(concurrency=4)) as client:
        interrupter = interrupt_when(gate.held)
        with pytest.raises(pt.BatchInterrupted) as info:
            client.chat_batch(prompts(100))
        interrupter.join()
        assert isinstance(info.value, KeyboardInterrupt)
        kept = [r.index for r in info.value.results]
        assert kept == sorted(kept)
        assert 1 <= len(kept) <= 5
        assert all(r.ok for r in info.value.results)
        assert info.value.statistics is not None
        assert info.value.statistics.succeeded == 5
        assert client.statistics().in_flight == 0
        gate.free = 10**6
        assert len(client.chat_batch(prompts(20))) == 20  # still usable


def test_interrupt_of_a_single_call_cancels_it() -> None:
    gate = Gate(free=0)
    with sync_client(gate) as client:
        interrupter = interrupt_when(gate.held)
        with pytest.raises(KeyboardInterrupt):
            client.chat(MESSAGES)
        interrupter.join()
        assert client.statistics().in_flight == 0
        assert client.statistics().cancelled == 1


def test_stream_batch_yields_as_they_finish_and_stops_on_break() -> None:
    with sync_client(echo, limits=pt.Limits(concurrency=2)) as client:
        with client.stream_batch(prompts(1000)) as results:
            first = [next(results) for _ in range(3)]
        assert len(first) == 3
        stats = results.statistics()
        assert stats.done < 1000  # cancelled on leaving: not run to its end
        assert client.statistics().in_flight == 0
        with client.stream_batch(prompts(30)) as results:
            assert sorted(r.index for r in results) == list(range(30))
        assert results.statistics().succeeded == 30


def test_stream_batch_interrupt_while_waiting_for_a_result() -> None:
    gate = Gate(free=3, hold=2)
    with sync_client(gate, limits=pt.Limits(concurrency=2)) as client:
        got: list[pt.BatchResult] = []
        interrupter = interrupt_when(gate.held)
        with pytest.raises(KeyboardInterrupt), client.stream_batch(prompts(50)) as results:
            got.extend(results)
        interrupter.join()
        assert len(got) <= 3
        assert all(r.ok for r in got)
        assert client.statistics().in_flight == 0


def test_stream_batch_interrupted_once_its_job_is_handed_to_the_loop() -> None:
    # The flake of the test above, made exact: on a busy machine the loop ran the batch
    # while the Ctrl-C landed inside the hand-over (in __enter__), and nothing cancelled it.
    gate = Gate(free=0, hold=2)
    with sync_client(gate, limits=pt.Limits(concurrency=2)) as client:
        InterruptedHandOver(client._loop, before=lambda: gate.held.wait(30))
        with pytest.raises(KeyboardInterrupt), client.stream_batch(prompts(50)):
            pytest.fail("entered")  # pragma: no cover
        assert gate.held.is_set()
        assert client.statistics().in_flight == 0


def test_a_call_interrupted_once_handed_to_the_loop_is_cancelled() -> None:
    gate = Gate(free=0, hold=1)
    with sync_client(gate) as client:
        InterruptedHandOver(client._loop, before=lambda: gate.held.wait(30))
        with pytest.raises(KeyboardInterrupt):
            client.chat(MESSAGES)
        assert gate.held.is_set()
        assert client.statistics().in_flight == 0


def test_stream_needs_a_with_block() -> None:
    with sync_client(echo) as client:
        stream = client.stream_batch(prompts(1))
        with pytest.raises(RuntimeError, match="with"):
            next(stream)


def test_stream_batch_interrupt_in_the_loop_body() -> None:
    with sync_client(echo, limits=pt.Limits(concurrency=2)) as client:
        got: list[pt.BatchResult] = []
        with pytest.raises(KeyboardInterrupt):  # noqa: PT012
            with client.stream_batch(prompts(500)) as results:
                for result in results:
                    got.append(result)
                    if len(got) == 7:
                        raise KeyboardInterrupt
        assert len(got) == 7
        assert client.statistics().in_flight == 0


def test_embed_batch_and_embeddings_array() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        inputs = json.loads(request.content)["input"]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0]}
            for i, t in enumerate(inputs)
        ]
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        return httpx2.Response(200, json={"object": "list", "data": data, "usage": usage})

    with sync_client(handler) as client:
        results = client.embed_batch(["a", "bb", "ccc"], encoding_format="float")
        assert client.embed("dddd", encoding_format="float").vectors[0][0] == 4.0
    array = pt.embeddings_array(results)
    assert array.shape == (3, 2)
    assert list(array[:, 0]) == [1.0, 2.0, 3.0]
    frame = pt.results_frame(results)
    assert "text" not in frame.columns
    assert [list(v) for v in frame["embedding"]] == [[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]]
    assert frame["total_tokens"].tolist() == [1, 1, 1]


def test_embed_frame_keeps_the_index_and_marks_failures() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        inputs = json.loads(request.content)["input"]
        if "bad" in inputs:
            return status(400)
        data = [{"object": "embedding", "index": i, "embedding": [0.5, 0.5]}
                for i, _ in enumerate(inputs)]  # fmt: skip
        return httpx2.Response(200, json={"object": "list", "data": data})

    df = pd.DataFrame({"text": ["a", "bad", "c"]}, index=["x", "y", "z"])
    with sync_client(handler, retry=NO_RETRY) as client:
        out = client.embed_frame(df, encoding_format="float")
        results = client.embed_batch(df["text"], encoding_format="float")
    assert list(out.index) == ["x", "y", "z"]
    assert out["ok"].tolist() == [True, False, True]
    assert out["embedding"].isna().tolist() == [False, True, False]
    array = pt.embeddings_array(results)
    assert array.shape == (3, 2)
    assert pd.isna(array[1]).all()


def test_chat_stream_blocking() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        chunks = [
            {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            for word in ("Hel", "lo")
        ]  # fmt: skip
        chunks.append(
            {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        )  # fmt: skip
        body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx2.Response(
            200, content=body.encode(), headers={"Content-Type": "text/event-stream"}
        )

    with sync_client(handler) as client:
        with client.chat_stream(MESSAGES) as stream:
            with pytest.raises(RuntimeError, match="end"):
                _ = stream.completion
            deltas = [chunk.delta for chunk in stream]
        assert "".join(deltas) == "Hello"
        assert stream.completion.text == "Hello"


def test_chat_stream_that_cannot_open_raises_on_entering() -> None:
    with sync_client(lambda r: status(403), retry=NO_RETRY) as client:
        with pytest.raises(pt.PermissionDeniedError), client.chat_stream(MESSAGES):
            pass


# ============================================================================ asyncio


def test_from_asyncio_through_to_thread() -> None:
    with sync_client(echo) as client:

        async def main() -> list[str]:
            done = await asyncio.gather(
                *(asyncio.to_thread(client.chat, [{"role": "user", "content": f"a{i}"}])
                  for i in range(8))
            )  # fmt: skip
            return [c.text for c in done]

        assert asyncio.run(main()) == [f"a{i}" for i in range(8)]


# ============================================================================ DataFrames


def test_chat_frame_round_trip() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if body["messages"][-1]["content"] == "bad":
            return status(400)
        return echo(request)

    df = pd.DataFrame(
        {"prompt": ["one", "bad", "three"], "key": ["k1", "k2", "k3"]}, index=[10, 20, 30]
    )
    with sync_client(handler, retry=NO_RETRY) as client:
        out = client.chat_frame(df, column="prompt", id_column="key", system="Be brief")
    assert list(out.index) == [10, 20, 30]
    assert out["text"].isna().tolist() == [False, True, False]
    assert out.loc[10, "text"] == "one"
    assert list(out["ok"]) == [True, False, True]
    assert list(out["custom_id"]) == ["k1", "k2", "k3"]
    assert out["error_type"].isna().tolist() == [True, False, True]
    assert out.loc[20, "error_type"] == "BadRequestError"
    assert "400" in out.loc[20, "error"]
    assert out["attempts"].tolist() == [1, 1, 1]
    assert int(out["total_tokens"].iloc[0]) > 0
    assert pd.isna(out["total_tokens"].iloc[1])
    joined = df.join(out)
    assert joined.loc[30, "text"] == "three"


def test_chat_frame_names_a_missing_column() -> None:
    with sync_client(echo) as client, pytest.raises(KeyError, match="column="):
        client.chat_frame(pd.DataFrame({"text": ["x"]}))


def test_results_frame_of_a_batch() -> None:
    with sync_client(echo) as client:
        results = client.chat_batch(prompts(5))
    frame = pt.results_frame(reversed(results))
    assert list(frame.index) == [0, 1, 2, 3, 4]
    assert list(frame.columns) == [
        "custom_id", "ok", "text", "error", "error_type", "prompt_tokens",
        "completion_tokens", "total_tokens", "attempts", "latency",
    ]  # fmt: skip


def test_pandas_tqdm_and_numpy_are_imported_only_when_used() -> None:
    code = (
        "import sys, paradigm_trio as pt\n"
        "assert pt.SyncClient\n"
        "print(sorted(m for m in ('pandas', 'tqdm', 'numpy') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


# ============================================================================ progress


def test_progress_bar_counts_every_result(capsys: pytest.CaptureFixture[str]) -> None:
    with sync_client(echo) as client:
        results = client.chat_batch(prompts(25), progress=True)
        with client.stream_batch(prompts(7), progress=True) as stream:
            assert len(list(stream)) == 7
    assert len(results) == 25
    err = capsys.readouterr().err
    assert "25/25" in err
    assert "7/7" in err


class FakeBar:
    """A ``tqdm`` that keeps its instances (the ``tqdm.auto`` of these tests)."""

    made: ClassVar[list[FakeBar]] = []

    def __init__(self, total: int | None = None, **kwargs: Any) -> None:
        self.n = 0
        self.total = total
        self.closed = False
        self.postfix: dict[str, Any] = {}
        FakeBar.made.append(self)

    def update(self, n: int) -> None:
        self.n += n

    def set_postfix(self, refresh: bool = True, **postfix: Any) -> None:
        self.postfix = postfix

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_tqdm(monkeypatch: pytest.MonkeyPatch) -> list[FakeBar]:
    import types

    module = types.ModuleType("tqdm.auto")
    module.tqdm = FakeBar  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tqdm.auto", module)
    monkeypatch.setattr(FakeBar, "made", [])
    return FakeBar.made


def test_a_stream_that_cannot_start_closes_its_progress_bar(fake_tqdm: list[FakeBar]) -> None:
    with sync_client(echo) as client:
        stream = client.stream_batch(prompts(3), progress=True)
        with stream as results:
            with pytest.raises(RuntimeError, match="entered once"):
                stream.__enter__()
            assert len(list(results)) == 3
        late = client.stream_batch(prompts(3), progress=True)
    with pytest.raises(RuntimeError, match="closed"):
        late.__enter__()  # the client closed meanwhile: the loop refuses the job
    assert len(fake_tqdm) == 3
    assert all(bar.closed for bar in fake_tqdm)
    assert fake_tqdm[0].n == 3


class Counted:
    """A result whose ``ok`` counts its reads (the work of a progress tick)."""

    reads = 0

    def __init__(self, ok: bool) -> None:
        self._ok = ok

    @property
    def ok(self) -> bool:
        Counted.reads += 1
        return self._ok


def test_a_progress_tick_reads_only_the_new_results(monkeypatch: pytest.MonkeyPatch) -> None:
    from paradigm_trio._frames import Advance

    monkeypatch.setattr(Counted, "reads", 0)
    finished = [Counted(ok=i % 10 != 0) for i in range(10_000)]
    bar = FakeBar()
    advance = Advance(bar)
    advance(finished)
    assert (bar.n, bar.postfix, Counted.reads) == (10_000, {"failed": 1000}, 10_000)
    finished += [Counted(ok=False) for _ in range(5)]
    advance(finished)
    advance(finished)  # nothing new: nothing read
    assert (bar.n, bar.postfix, Counted.reads) == (10_005, {"failed": 1005}, 10_005)


def test_missing_extras_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with sync_client(echo) as client:
        with pytest.raises(ImportError, match=r"pip install tqdm, .*'\.\[progress\]'"):
            client.chat_batch(prompts(3), progress=True)
        stream = client.stream_batch(prompts(3), progress=True)
        with pytest.raises(ImportError, match=r"pip install tqdm, .*'\.\[progress\]'"), stream:
            pass
        assert client.statistics().started == 0  # nothing was sent, nothing left running
        assert len(client.chat_batch(prompts(3))) == 3
        with pytest.raises(ImportError, match=r"pip install pandas, .*'\.\[dataframe\]'"):
            pt.results_frame([])


def test_paradigm_endpoints_block() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if request.url.path.endswith("/tokenize"):
            return httpx2.Response(200, json={"total_tokens": len(body["prompt"]), "model": "m"})
        return httpx2.Response(200, json=[{"query": body["query"], "chunks": []}])

    with sync_client(handler) as client:
        assert client.tokenize("four").count == 4
        assert [r.value.count for r in client.tokenize_batch(["a", "bb"])] == [1, 2]
        assert client.query("q")[0].query == "q"
