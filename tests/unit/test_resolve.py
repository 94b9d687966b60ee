"""The transport's DNS cache (``_resolve.Resolver``), on a fake network (````tests/fakenet.py``).

The fake resolver counts look-ups; the fake sockets play connection scenarios on the
virtual clock.  The scenarios run through ``trio.open_tcp_stream`` too, so that the cache
is shown to connect, and fail, as trio does.
"""

from __future__ import annotations

import socket as stdlib_socket
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from paradigm_trio._transport._resolve import DNS_TTL, HAPPY_EYEBALLS_DELAY, Resolver

from .. import fakenet
from ..fakenet import FakeResolver, Scenario

pytestmark = pytest.mark.anyio

NAME = "api.example"
PORT = 443


def entry(ip: str) -> tuple[Any, ...]:
    return fakenet.entry(ip, PORT)


# ---------------------------------------------------------------------- the cache


async def test_concurrent_connections_to_one_name_make_one_lookup() -> None:
    fake = FakeResolver(["10.0.0.1", "10.0.0.2"]).install()
    resolver = Resolver()
    answers: list[list[Any]] = []

    async def one() -> None:
        answers.append(await resolver.addresses(NAME, PORT))

    async with trio.open_nursery() as nursery:
        for _ in range(200):
            nursery.start_soon(one)
    assert fake.lookups == [(NAME.encode(), PORT)]
    assert len(answers) == 200
    assert all(a == [entry("10.0.0.1"), entry("10.0.0.2")] for a in answers)
    # Another port of the same name is another look-up.
    await resolver.addresses(NAME, 8443)
    assert len(fake.lookups) == 2


async def test_an_answer_is_reused_for_the_ttl_then_looked_up_again() -> None:
    fake = FakeResolver(delay=0.0).install()
    resolver = Resolver()
    await resolver.addresses(NAME, PORT)
    await trio.sleep(DNS_TTL - 1)
    with trio.testing.assert_checkpoints():  # a cached answer is still a checkpoint
        await resolver.addresses(NAME, PORT)
    assert len(fake.lookups) == 1
    await trio.sleep(1.5)
    await resolver.addresses(NAME, PORT)
    assert len(fake.lookups) == 2
    assert DNS_TTL == 60.0  # the documented figure (docs/howto-enterprise-networks.md)


async def test_a_failed_lookup_fails_every_waiter_and_is_not_kept() -> None:
    error = stdlib_socket.gaierror(stdlib_socket.EAI_NONAME, "Name or service not known")
    fake = FakeResolver(error=error).install()
    resolver = Resolver()
    raised: list[BaseException] = []

    async def one() -> None:
        try:
            await resolver.addresses(NAME, PORT)
        except OSError as exc:
            raised.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)
    assert len(fake.lookups) == 1
    assert len(raised) == 5
    for exc in raised:
        assert type(exc) is stdlib_socket.gaierror
        assert exc.errno == stdlib_socket.EAI_NONAME
        assert str(exc) == str(error)
    assert len({id(exc) for exc in raised}) == 5  # one exception object per task
    # Not kept: the next connection looks the name up again, and may succeed.
    fake.error = None
    assert await resolver.addresses(NAME, PORT) == [entry("10.0.0.1")]
    assert len(fake.lookups) == 2


async def test_a_cancelled_lookup_is_taken_over_by_a_waiter() -> None:
    fake = FakeResolver(delay=1.0).install()
    resolver = Resolver()
    got: list[Any] = []

    async def impatient() -> None:
        with trio.move_on_after(0.5):
            await resolver.addresses(NAME, PORT)

    async def patient() -> None:
        await trio.sleep(0.1)
        got.append(await resolver.addresses(NAME, PORT))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(impatient)
        nursery.start_soon(patient)
    assert got == [[entry("10.0.0.1")]]
    assert len(fake.lookups) == 2  # the second started when the first was cancelled


async def test_ip_addresses_are_not_looked_up() -> None:
    fake = FakeResolver().install()
    scenario = Scenario([("10.1.2.3", 0.0, "success")]).install()
    resolver = Resolver()
    stream = await resolver.open_tcp_stream("10.1.2.3", PORT)
    assert stream.socket is scenario.sockets["10.1.2.3"]
    assert fake.lookups == []
    assert resolver._lookups == {}


async def test_many_names_do_not_grow_the_cache_without_bound() -> None:
    FakeResolver(delay=0.0).install()
    resolver = Resolver()
    for i in range(1000):
        await resolver.addresses(f"host{i}.example", PORT)
    assert len(resolver._lookups) <= 64


# ---------------------------------------------------------------------- connecting


async def play(
    plan: Sequence[tuple[str, float, str]],
    connect: Callable[[str, int], Any],
    no_ipv6: bool = False,
) -> tuple[str | BaseException, Scenario]:
    """Connect to ``NAME`` with ``connect``: the winning address (or the error) and the
    scenario, whose losing sockets must all be closed."""
    scenario = Scenario(plan, no_ipv6).install()
    FakeResolver(scenario.ips, delay=0.0).install()
    try:
        stream = await connect(NAME, PORT)
    except OSError as exc:
        outcome: str | BaseException = exc
        winner = None
    else:
        winner = stream.socket
        outcome = next(ip for ip, sock in scenario.sockets.items() if sock is winner)
    assert all(sock.closed for sock in scenario.sockets.values() if sock is not winner)
    return outcome, scenario


PLANS: list[tuple[str, list[tuple[str, float, str]], dict[str, bool]]] = [
    ("one address", [("10.0.0.1", 0.1, "success")], {}),
    ("the first is slow", [("10.0.0.1", 10, "success"), ("10.0.0.2", 0.1, "success")], {}),
    ("the first fails fast", [("10.0.0.1", 0.01, "error"), ("10.0.0.2", 1, "success")], {}),
    ("all fail", [("10.0.0.1", 0.1, "error"), ("10.0.0.2", 0.5, "error")], {}),
    ("families mixed", [("::1", 9, "error"), ("::2", 0, "success"), ("1.2.3.4", 9, "success")], {}),
    ("no IPv6", [("::1", 0, "success"), ("1.2.3.4", 0.2, "success")], {"no_ipv6": True}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("plan", "options"), [(p, o) for _, p, o in PLANS], ids=[n for n, _, _ in PLANS]
)
async def test_addresses_are_tried_as_trio_tries_them(
    plan: list[tuple[str, float, str]], options: dict[str, bool]
) -> None:
    theirs, their_scenario = await play(plan, trio.open_tcp_stream, **options)
    ours, our_scenario = await play(plan, Resolver().open_tcp_stream, **options)
    assert our_scenario.tried == their_scenario.tried  # the same addresses at the same times
    if isinstance(theirs, BaseException):
        assert isinstance(ours, BaseException)
        assert (type(ours), str(ours)) == (type(theirs), str(theirs))
        assert str(ours) == f"all attempts to connect to {NAME}:{PORT} failed"
        assert isinstance(ours.__cause__, ExceptionGroup)
        assert [str(e) for e in ours.__cause__.exceptions] == [
            str(e)
            for e in theirs.__cause__.exceptions  # type: ignore[union-attr]
        ]
    else:
        assert ours == theirs


async def test_the_next_address_starts_after_the_happy_eyeballs_delay() -> None:
    _, scenario = await play(
        [("10.0.0.1", 100, "success"), ("10.0.0.2", 100, "success"), ("10.0.0.3", 0, "success")],
        Resolver().open_tcp_stream,
    )
    assert scenario.tried == [
        ("10.0.0.1", 0.0),
        ("10.0.0.2", HAPPY_EYEBALLS_DELAY),
        ("10.0.0.3", 2 * HAPPY_EYEBALLS_DELAY),
    ]


async def test_a_cancelled_connection_closes_every_socket() -> None:
    scenario = Scenario([("10.0.0.1", 100, "success"), ("10.0.0.2", 100, "success")]).install()
    FakeResolver(scenario.ips, delay=0.0).install()
    with trio.move_on_after(1):
        await Resolver().open_tcp_stream(NAME, PORT)
    assert len(scenario.sockets) == 2
    assert all(sock.closed for sock in scenario.sockets.values())


async def test_a_lookup_failure_is_trios() -> None:
    error = stdlib_socket.gaierror(stdlib_socket.EAI_NONAME, "Name or service not known")
    FakeResolver(error=error, delay=0.0).install()
    with pytest.raises(stdlib_socket.gaierror) as theirs:
        await trio.open_tcp_stream(NAME, PORT)
    with pytest.raises(stdlib_socket.gaierror) as ours:
        await Resolver().open_tcp_stream(NAME, PORT)
    assert str(ours.value) == str(theirs.value)


# Any plan: up to four addresses of both families, each slow or fast, failing or not.
_PLAN = st.lists(
    st.tuples(st.sampled_from(["error", "success"]), st.sampled_from([0.0, 0.1, 0.3, 5.0])),
    min_size=1,
    max_size=4,
)


@given(plan=_PLAN, v6=st.lists(st.booleans(), min_size=4, max_size=4))
def test_any_scenario_plays_out_as_with_trio(plan: list[tuple[str, float]], v6: list[bool]) -> None:
    ips = [f"::{i + 1}" if v6[i] else f"10.0.0.{i + 1}" for i in range(len(plan))]
    steps = [(ip, delay, result) for ip, (result, delay) in zip(ips, plan, strict=True)]

    async def both() -> None:
        theirs, their_scenario = await play(steps, trio.open_tcp_stream)
        ours, our_scenario = await play(steps, Resolver().open_tcp_stream)
        assert our_scenario.tried == their_scenario.tried
        if isinstance(theirs, BaseException) and len(steps) == 1:
            # One address: a plain connect, whose error is the socket's own (trio's is
            # "all attempts ... failed", that error its cause's only member).
            [alone] = theirs.__cause__.exceptions  # type: ignore[union-attr]
            assert (type(ours), str(ours)) == (type(alone), str(alone))
        elif isinstance(theirs, BaseException):
            assert (type(ours), str(ours)) == (type(theirs), str(theirs))
        else:
            assert ours == theirs

    trio.run(both, clock=trio.testing.MockClock(autojump_threshold=0))
