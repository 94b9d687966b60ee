"""Hypothesis strategies for the reliability properties, and the harness that runs them.

A *schedule* says, per request (``custom_id``) and attempt, what the mock server does:
``"ok"``, a status (``"429"``, ``"503"``, ``"400"``...), ``"hang"``, ``"reset"``,
``"close"``, ``"malformed"``, ``"truncated"``, or for streamed requests ``"stream_cut"``,
``"stream_error"``, ``"stream_no_done"``; each with an optional ``Retry-After``, an
``x-should-retry`` override and a latency.  It is handed to the mock as scripts
(``server.script(key, [...])``), so the outcome of attempt *n* of a request never depends
on arrival order or concurrency.  Attempts past the end of a request's script succeed.

Everything here prints as something a developer can paste back into a test::

    Schedule({'r0': ['503', '429 ra=12ms', 'ok'], 'r1': ['400 sr=true']}, invalid=(2,))

Step syntax: ``KIND [ra=Nms] [sr=true|false] [lat=Nms]`` (``ra``: the ``Retry-After``
announced, sent as ``retry-after-ms``; ``sr``: ``x-should-retry``; ``lat``: delay before
answering).  Timescales are milliseconds so that an example costs milliseconds too.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio
from hypothesis import reject, settings
from hypothesis import strategies as st

import mock_server as ms
import paradigm_trio as pt

from .. import pace

__all__ = [
    "API_KEY",
    "NO_STORM_CONTROL",
    "Schedule",
    "Step",
    "examples",
    "expected_outcome",
    "key_of",
    "limits",
    "mock_and_client",
    "records_by_key",
    "retry_policies",
    "run_trio",
    "schedules",
    "settle",
    "slack",
    "steps",
    "timeouts",
]

T = TypeVar("T")

API_KEY = "sk-property-test-key"
STATUS_KINDS = ("400", "401", "404", "408", "409", "422", "429", "500", "502", "503", "504")
CONNECTION_KINDS = ("hang", "reset", "close")
BODY_KINDS = ("malformed", "truncated")
STREAM_KINDS = ("stream_cut", "stream_error", "stream_no_done")


def key_of(custom_id: str) -> str:
    """The ``Idempotency-Key`` the client derives from a ``custom_id`` (documented, stable)."""
    return "pt-" + hashlib.sha256(custom_id.encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- schedules


class Step:
    """What the server does for one attempt (one ``mock_server`` script entry).

    A plain class, not a dataclass, so that hypothesis prints it with its short ``repr``.
    """

    __slots__ = ("kind", "latency_ms", "retry_after_ms", "should_retry")

    def __init__(
        self,
        kind: str,
        retry_after_ms: int | None = None,
        should_retry: bool | None = None,
        latency_ms: int | None = None,
    ) -> None:
        self.kind = kind
        self.retry_after_ms = retry_after_ms
        self.should_retry = should_retry
        self.latency_ms = latency_ms

    def _astuple(self) -> tuple[object, ...]:
        return (self.kind, self.retry_after_ms, self.should_retry, self.latency_ms)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Step) and self._astuple() == other._astuple()

    def __hash__(self) -> int:
        return hash(self._astuple())

    @classmethod
    def parse(cls, text: str) -> Step:
        """``"429 ra=12ms sr=false lat=3ms"`` -> a :class:`Step` (the inverse of ``str``)."""
        kind, *options = text.split()
        values: dict[str, Any] = {}
        for option in options:
            name, _, value = option.partition("=")
            if name == "sr":
                values["should_retry"] = value == "true"
            elif name in ("ra", "lat"):
                number = int(value.removesuffix("ms"))
                values["retry_after_ms" if name == "ra" else "latency_ms"] = number
            else:
                raise ValueError(f"unknown step option {option!r} in {text!r}")
        return cls(kind, **values)

    @property
    def retry_after(self) -> float | None:
        """The wait the server announces, in seconds (exact: it is sent in milliseconds)."""
        return None if self.retry_after_ms is None else self.retry_after_ms / 1000

    @property
    def status(self) -> int | None:
        return int(self.kind) if self.kind.isdigit() else None

    def fault(self) -> ms.Fault:
        return ms.Fault(
            self.kind,
            retry_after=self.retry_after,
            should_retry=self.should_retry,
            latency=None if self.latency_ms is None else self.latency_ms / 1000,
        )

    def __str__(self) -> str:
        text = self.kind
        if self.retry_after_ms is not None:
            text += f" ra={self.retry_after_ms}ms"
        if self.should_retry is not None:
            text += f" sr={'true' if self.should_retry else 'false'}"
        if self.latency_ms is not None:
            text += f" lat={self.latency_ms}ms"
        return text

    def __repr__(self) -> str:
        return repr(str(self))


OK = Step("ok")


class Schedule:
    """Scripted outcomes per ``custom_id`` (in batch order), plus input items that are invalid.

    ``Schedule({'r0': ['503', 'ok'], 'r1': []}, invalid=(1,))``: the batch is
    ``[r0, <invalid item>, r1]``; ``invalid`` are positions in the batch of items that are
    not requests at all (a bare dict), which must come back as a ``ValueError`` result.
    Its ``repr`` is exactly that: paste a failing example back into a test to replay it.
    """

    __slots__ = ("_parsed", "invalid")

    def __init__(
        self, steps: Mapping[str, Sequence[Step | str]], invalid: tuple[int, ...] = ()
    ) -> None:
        self._parsed = {
            cid: tuple(s if isinstance(s, Step) else Step.parse(s) for s in seq)
            for cid, seq in steps.items()
        }
        self.invalid = tuple(invalid)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Schedule)
            and self._parsed == other._parsed
            and self.invalid == other.invalid
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        body = {cid: [str(s) for s in seq] for cid, seq in self._parsed.items()}
        extra = f", invalid={self.invalid!r}" if self.invalid else ""
        return f"Schedule({body!r}{extra})"

    @property
    def custom_ids(self) -> list[str]:
        return list(self._parsed)

    def __len__(self) -> int:
        """Items in the batch (requests and invalid items)."""
        return len(self._parsed) + len(self.invalid)

    def script_of(self, custom_id: str) -> tuple[Step, ...]:
        return self._parsed[custom_id]

    def step(self, custom_id: str, attempt: int) -> Step:
        """What attempt ``attempt`` (1-based) of ``custom_id`` gets: past the script, ok."""
        script = self._parsed[custom_id]
        return script[attempt - 1] if attempt <= len(script) else OK

    def install(self, server: ms.MockServer) -> None:
        """Hand the schedule to the mock as scripts."""
        for cid, script in self._parsed.items():
            server.script(key_of(cid), [s.fault() for s in script])

    def items(self, *, max_tokens: int = 8) -> list[Any]:
        """The batch: a :class:`pt.ChatRequest` per ``custom_id``, invalid items interleaved."""
        requests = iter(self._parsed)
        out: list[Any] = []
        for index in range(len(self)):
            if index in self.invalid:
                out.append({"role": "user", "content": "a bare dict is not a message list"})
            else:
                cid = next(requests)
                out.append(
                    pt.ChatRequest(
                        messages=({"role": "user", "content": f"Hello {cid}"},),
                        custom_id=cid,
                        max_tokens=max_tokens,
                    )
                )
        return out

    def request_positions(self) -> Iterator[tuple[int, str]]:
        """``(index in the batch, custom_id)`` of every real request."""
        requests = iter(self._parsed)
        for index in range(len(self)):
            if index not in self.invalid:
                yield index, next(requests)


@st.composite
def steps(
    draw: st.DrawFn,
    *,
    stream: bool = False,
    kinds: Sequence[str] | None = None,
    max_latency_ms: int = 15,
    max_retry_after_ms: int = 40,
) -> Step:
    """One scripted attempt.  ``kinds`` restricts the kinds drawn."""
    _ms = st.integers(min_value=0, max_value=max_retry_after_ms)
    if kinds is None:
        # Duplicates weight the draw: mostly statuses, some connection and body faults.
        kinds = [
            "ok", "ok", "429", "429", "500", "502", "503", "504", "400", "401", "404", "422",
            "408", "409", "hang", "reset", "reset", "close", "close", "malformed", "truncated",
        ]  # fmt: skip
        if stream:
            kinds = [*kinds, *STREAM_KINDS]
    kind = draw(st.sampled_from(list(kinds)))
    retry_after_ms = should_retry = None
    if kind == "429":
        retry_after_ms = draw(_ms)
    elif kind.isdigit():
        retry_after_ms = draw(st.none() | st.none() | st.none() | _ms)
    if kind.isdigit():
        should_retry = draw(st.sampled_from([None, None, None, None, True, False]))
    latency_ms = draw(st.none() | st.none() | st.integers(0, max_latency_ms))
    return Step(kind, retry_after_ms, should_retry, latency_ms)


@st.composite
def schedules(
    draw: st.DrawFn,
    *,
    min_requests: int = 1,
    max_requests: int = 8,
    min_steps: int = 0,
    max_steps: int = 5,
    invalid: bool = False,
    step: st.SearchStrategy[Step] | None = None,
) -> Schedule:
    """A batch of ``r0..rN`` with a script each (possibly empty: plain success)."""
    n = draw(st.integers(min_requests, max_requests))
    step = step if step is not None else steps()
    scripts = {
        f"r{i}": draw(st.lists(step, min_size=min_steps, max_size=max_steps)) for i in range(n)
    }
    bad: tuple[int, ...] = ()
    if invalid:
        positions = draw(st.sets(st.integers(0, n), max_size=2))
        bad = tuple(sorted(positions))
    return Schedule(scripts, invalid=bad)


# --------------------------------------------------------------------------- policies


def _seconds(max_ms: int) -> st.SearchStrategy[float]:
    return st.integers(0, max_ms).map(lambda ms: ms / 1000)


@st.composite
def retry_policies(
    draw: st.DrawFn, *, min_attempts: int = 1, max_attempts: int = 5, max_wait_ms: int = 40
) -> pt.RetryPolicy:
    """A :class:`pt.RetryPolicy` on a millisecond timescale (waits up to ``max_wait_ms``)."""
    return pt.RetryPolicy(
        attempts=draw(st.integers(min_attempts, max_attempts)),
        initial_delay=draw(_seconds(min(20, max_wait_ms))),
        multiplier=draw(st.sampled_from([1.0, 1.5, 2.0, 3.0])),
        max_delay=draw(_seconds(max_wait_ms)),
        jitter=draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])),
        max_retry_after=draw(_seconds(max_wait_ms)),
        retry_statuses=draw(
            st.sets(st.sampled_from([408, 409, 429, 400, 404, 422])).map(frozenset)
            | st.just(frozenset({408, 409, 429}))
        ),
        retry_connection_errors=draw(st.sampled_from([True, True, True, False])),
        retry_invalid_responses=draw(st.sampled_from([True, True, True, False])),
    )


@st.composite
def timeouts(draw: st.DrawFn, *, total: bool = False) -> pt.Timeouts:
    """:class:`pt.Timeouts` whose ``attempt`` bounds a hang (0.2 to 0.5 s)."""
    return pt.Timeouts(
        connect=5.0,
        read=5.0,
        write=5.0,
        attempt=draw(st.sampled_from([0.25, 0.35, 0.5])),
        first_token=draw(st.sampled_from([0.25, 0.35, 0.5])),
        total=draw(st.floats(0.02, 0.4).map(lambda s: round(s, 3))) if total else None,
    )


@st.composite
def limits(draw: st.DrawFn, *, max_concurrency: int = 8) -> pt.Limits:
    return pt.Limits(
        concurrency=draw(st.integers(1, max_concurrency)), adaptive=draw(st.booleans())
    )


# --------------------------------------------------------------------------- harness


# Batches that the oracle judges without its storm-control model turn the budget and the
# breaker off (``predict`` ignores them; ``predict_batch`` models them, sequentially), and
# the systematic-failure rule, which no oracle models (tests/unit/test_systematic.py has
# its own property).
NO_STORM_CONTROL: dict[str, Any] = {
    "retry_budget": None,
    "circuit_breaker": None,
    "systematic_failures": None,
}


def examples(fraction: float) -> int:
    """``fraction`` of the profile's ``max_examples`` (at least 1): for costly properties."""
    return max(1, round(settings.default.max_examples * fraction))


def records_by_key(server: ms.MockServer) -> dict[str, list[ms.RequestRecord]]:
    """The server's request log by ``Idempotency-Key``, each key's attempts in order."""
    by_key: dict[str, list[ms.RequestRecord]] = defaultdict(list)
    for record in server.requests():
        by_key[record.key].append(record)
    for records in by_key.values():
        records.sort(key=lambda r: r.attempt)
    return by_key


def expected_outcome(kind: str, *, stream: bool) -> str:
    """The ``outcome`` the server logs for a scripted kind."""
    if kind.startswith("stream_") and not stream:
        return "ok"
    return kind


async def settle(server: ms.MockServer, *, within: float = 3.0) -> None:
    """Wait until the server has no request in flight (it saw every disconnect)."""
    with trio.fail_after(within):
        while server.stats().in_flight:
            await trio.sleep(0.01)


FROZEN = 0.1
"""The longest pause of the process (seconds) after which a failing example is still
believed: the examples' bounds of real time (a hang's ``attempt``/``first_token``, 0.25 s
at the least) hold an answer of a few milliseconds with room to spare, unless the machine
stopped this process for a good part of them.  Client and mock share one trio loop, so
such a stop shows as the loop's lateness, which :func:`run_trio` watches."""


class _Lateness:
    """The worst lateness of trio's loop while an example runs (a sleep of 5 ms that took
    longer, by how much)."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def watch(self) -> None:
        while True:
            before = trio.current_time()
            await trio.sleep(0.005)
            self.worst = max(self.worst, trio.current_time() - before - 0.005)


def run_trio(fn: Callable[[], Awaitable[T]], *, limit: float = 60.0) -> T:
    """Run one example's async body under trio, failing (not hanging) after ``limit`` s.

    An example that fails after the process was stopped for :data:`FROZEN` seconds or more
    (a loaded machine: measured by the loop's lateness) is discarded (``reject``), not
    reported: what it saw of real time says nothing of the client.  It is drawn again
    otherwise; on a machine that is not starved, every failure stands.
    """
    lateness = _Lateness()

    async def main() -> T:
        trio.lowlevel.spawn_system_task(lateness.watch)  # (cancelled when main returns)
        with trio.fail_after(limit):
            return await fn()

    try:
        return trio.run(main)
    except Exception:
        if lateness.worst >= FROZEN:
            reject()
        raise


@asynccontextmanager
async def mock_and_client(
    *,
    schedule: Schedule | None = None,
    config: ms.MockConfig | None = None,
    **client_kwargs: Any,
) -> Any:
    """A fresh in-process mock (127.0.0.1, ephemeral port) and a client pointed at it.

    First the machine's pace is measured (:func:`slack`), and the hang bounds of
    ``timeouts``, if given, kept above it.  Then one warm-up request (generous timeouts)
    opens a connection and pays any first-request cost before the server is reset and the
    schedule installed, so that the example's timing starts warm.  Both are closed on
    exit, whatever happens: the server's nursery is cancelled, so no request (not even a
    ``hang``) outlives the example.
    """
    config = config or ms.MockConfig(seed=0, retry_after=0.01)
    async with ms.serve(config) as server:
        _pace.round_trip = await pace.round_trip(server.url + "/models")
        if client_kwargs.get("timeouts") is not None:
            client_kwargs["timeouts"] = _at_pace(client_kwargs["timeouts"])
        async with pt.Client(api_key=API_KEY, base_url=server.url, **client_kwargs) as client:
            await _warm_up(client)
            server.reset()
            if schedule is not None:
                schedule.install(server)
            yield server, client


# --------------------------------------------------------------------------- pace
#
# Client and mock share one trio loop in one process, on a machine that may be busy.  The
# bounds of real time the examples depend on are kept above the machine's pace, measured
# just before each example (tests/pace.py), since the load changes over a run.


class _Pace:
    round_trip = 0.0


_pace = _Pace()


def slack(written: float) -> float:
    """A test's bound on time the machine adds (``written``: the quiet machine's), raised
    with the pace measured before the current example (:func:`tests.pace.slack`)."""
    return pace.slack(written, _pace.round_trip)


def _at_pace(timeouts: pt.Timeouts) -> pt.Timeouts:
    """``timeouts`` with the bounds of a hang (``attempt``, ``first_token``) no shorter than
    :func:`slack` allows: a hang still times out, an answer never does."""
    return timeouts.replace(
        **{
            name: slack(value)
            for name in ("attempt", "first_token")
            if (value := getattr(timeouts, name)) is not None
        }
    )


async def _warm_up(client: pt.Client) -> None:
    """One request (generous timeouts) that opens the client's connection."""
    await client.chat(
        [{"role": "user", "content": "warm-up"}],
        custom_id="warm-up",
        timeouts=pt.Timeouts(),
        retry=pt.RetryPolicy(attempts=3, initial_delay=0.01),
    )
