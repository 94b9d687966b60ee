"""Scenario 7: goodput under faults, paradigm-trio against the openai SDK and LiteLLM.

The mock server runs as a process (``python -m mock_server``) on 127.0.0.1, with a fixed
latency and a fixed seed.  Four fault mixes, each replayed identically for every client:

* **blip**: every request fails once with a 503, then succeeds (a script per key,
  ``["503", "ok"]``);
* **429s**: 10 % of attempts get a 429 with ``Retry-After: 1`` (the ``rate_limit`` fault: an
  overloaded replica, not a quota);
* **mixed**: a script per key drawn from a seeded generator: each attempt is a 429
  (``Retry-After: 1``), a 500 or a 503 with fixed probabilities, and a few requests are
  bad requests (400 on every attempt, so nobody can answer them);
* **streamed**: every client streams (``stream=True``) while the mock cuts streams
  midway, inserts a malformed chunk, ends streams with an error event, and stalls a few
  streams (``stream_stall``: the role chunk and half the content, then silence on an
  open connection).

Every request carries the ``Idempotency-Key`` paradigm-trio derives from its
``custom_id`` (the other clients send the same header with ``extra_headers``), so the
mock draws the same outcome for attempt *k* of request *i* whichever client sends it:
every client meets exactly the same faults.  The mock is reset (log, attempt numbers,
scripts) and reconfigured before every run.

The clients, each with its defaults (no retry, timeout or concurrency setting):

* paradigm-trio: ``Client(api_key=..., base_url=...)``, and ``stream_batch`` with no
  options (``stream=True`` for the streamed mix).  ``stream_batch`` is what ``chat_batch``
  runs; it is used so that the answers obtained before a time limit can be counted;
* openai: ``AsyncOpenAI(api_key=..., base_url=...)`` (``max_retries=2``, 600 s timeout)
  under trio, with a pool of worker tasks as in ``_peers``;
* paradigm-trio with ``hedge=True`` (``stream_batch(requests, hedge=True)``), run
  ``HEDGE_ROUNDS`` times alternating with its plain run: hedging must never lower
  goodput (the medians are compared);
* LiteLLM: ``litellm.acompletion(model="openai/alfred-4.2", api_base=...)`` under
  asyncio, one coroutine per request with an ``asyncio.Semaphore``.  Offline: the local
  model cost map and the other local copies (``LITELLM_LOCAL_*``), telemetry off, no
  callbacks.

Every client runs with the same concurrency (paradigm-trio's default, 64), in a fresh
worker process, under a time limit: what finished by then is counted, the rest is
*unfinished*.  An answer counts only if its text is exactly the reply the mock gives
that prompt (fetched beforehand without faults), so a silently truncated answer is a
failure.  A guard in each worker refuses (and reports) any connection or DNS look-up
that is not for 127.0.0.1.
"""

from __future__ import annotations

import collections
import errno
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._common import (
    API_KEY,
    MODEL,
    NAMES,
    Section,
    Table,
    Target,
    http_json,
    idempotency_key,
    messages,
    mock_process,
    run_worker,
)

CONCURRENCY = 64  # paradigm-trio's default Limits.concurrency
LATENCY = 0.05
TOKEN_DELAY = 0.002
SEED = 7
CLIENTS = ("openai", "litellm", "paradigm-trio", "paradigm-trio-hedged")
PEERS = ("openai", "litellm")
LABELS = {
    "openai": "openai AsyncOpenAI (defaults)",
    "litellm": "LiteLLM acompletion (defaults)",
    "paradigm-trio": "**paradigm-trio** (defaults)",
    "paradigm-trio-hedged": "**paradigm-trio**, `hedge=True`",
}
#: Hedging must not cost goodput: the hedged run's answers per second of wall time are at
#: least this share of the plain run's (the rest is the shared machine's noise).
HEDGE_GOODPUT_FLOOR = 0.95
#: Runs of paradigm-trio without and with ``hedge=True`` per mix (alternating; the
#: medians are compared).
HEDGE_ROUNDS = 5
PAIR = ("paradigm-trio", "paradigm-trio-hedged")
LITELLM_MODEL = "openai/" + MODEL
#: Set before LiteLLM is imported: use the copies shipped in the package, fetch nothing.
LITELLM_OFFLINE = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
}


def custom_id(i: int) -> str:
    return f"goodput-{i}"


# ---------------------------------------------------------------------- the mixes


@dataclass
class Mix:
    key: str
    label: str
    faults: dict[str, float] = field(default_factory=dict)
    stream: bool = False
    script: Callable[[int], list[Any]] | None = None  # request number -> outcomes
    answerable: Callable[[int], bool] = lambda i: True
    #: Time limit of a run, seconds: quick mode, full run.  The streamed mix's stalls take
    #: every client its read timeout (120 s or more), which quick mode does not wait for.
    limits: tuple[float, float] = (30.0, 150.0)


def _mixed_outcomes(i: int) -> list[Any]:
    """Request ``i``'s outcomes in the mixed mix (seeded: the same for every client)."""
    rng = random.Random(f"{SEED}-mixed-{i}")
    if _bad_request(i):
        return ["400"] * 6
    outcomes: list[Any] = []
    for _ in range(6):  # more than any client's attempts; then the normal "ok"
        u = rng.random()
        if u < 0.08:
            outcomes.append({"kind": "429", "retry_after": 1.0})
        elif u < 0.16:
            outcomes.append("500")
        elif u < 0.24:
            outcomes.append("503")
        else:
            outcomes.append("ok")
            break
    return outcomes


def _bad_request(i: int) -> bool:
    return random.Random(f"{SEED}-bad-{i}").random() < 0.02


MIXES = (
    Mix("blip", "blip: every request 503 once, then ok", script=lambda i: ["503", "ok"]),
    Mix("429s", "random 429s: 10 % of attempts, Retry-After 1 s", faults={"rate_limit": 0.10}),
    Mix(
        "mixed",
        "mixed: per attempt 8 % 429 (Retry-After 1 s), 8 % 500, 8 % 503; 2 % of requests 400",
        script=_mixed_outcomes,
        answerable=lambda i: not _bad_request(i),
    ),
    Mix(
        "streamed",
        "streamed: per attempt 4 % cut, 4 % malformed chunk, 2 % error event, 1 % stall",
        faults={"stream_cut": 0.04, "malformed": 0.04, "stream_error": 0.02, "stream_stall": 0.01},
        stream=True,
        limits=(10.0, 150.0),
    ),
)


# ---------------------------------------------------------------------- in the worker


def _is_local(host: object) -> bool:
    if host is None:
        return True
    text = host.decode() if isinstance(host, bytes) else str(host)
    return text in ("localhost", "::1") or text.startswith("127.")


def guard_network(blocked: list[str]) -> None:
    """Refuse, and note in ``blocked``, every DNS look-up or connection off 127.0.0.1."""
    import socket

    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local(host):
            blocked.append(f"DNS {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"benchmark: {host} is not 127.0.0.1")
        return real_getaddrinfo(host, *args, **kwargs)

    def refused(sock: socket.socket, address: Any) -> bool:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            blocked.append(f"connect {address[0]}:{address[1]}")
            return True
        return False

    def connect(self: socket.socket, address: Any) -> None:
        if refused(self, address):
            raise OSError(errno.ENETUNREACH, "benchmark: only 127.0.0.1 may be reached")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if refused(self, address):
            return errno.ENETUNREACH
        return real_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]


class Tally:
    """Answers (text exactly as expected), failures by kind, and the first error."""

    def __init__(self, expected: list[str]) -> None:
        self.expected = expected
        self.start = time.perf_counter()
        self.ok = 0
        self.times: list[float] = []  # when each answer arrived, seconds from the start
        self.errors: collections.Counter[str] = collections.Counter()
        self.first_error: str | None = None
        self.hedges: tuple[int, int] | None = None  # paradigm-trio: (sent, won)

    def answer(self, i: int, text: object) -> None:
        if text == self.expected[i % len(self.expected)]:
            self.ok += 1
            self.times.append(time.perf_counter() - self.start)
        else:
            self.errors["wrong or incomplete text"] += 1

    def fail(self, exc: BaseException) -> None:
        self.errors[type(exc).__name__] += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"[:300]

    def result(self, n: int, wall: float) -> dict[str, Any]:
        failures = sum(self.errors.values())
        return {
            "ok": self.ok,
            "failures": failures,
            "unfinished": n - self.ok - failures,
            "wall": wall,
            "errors": dict(self.errors),
            "first_error": self.first_error,
            "times": sorted(self.times),
            "hedges": self.hedges,
        }


def _headers(i: int) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key(custom_id(i))}


async def _paradigm_trio(task: dict[str, Any], tally: Tally) -> None:
    import trio

    import paradigm_trio as pt

    requests = (
        pt.ChatRequest(messages=messages(i), custom_id=custom_id(i)) for i in range(task["n"])
    )
    async with pt.Client(api_key=API_KEY, base_url=task["url"]) as client:
        with trio.move_on_after(task["limit"]):
            batch = client.stream_batch(requests, stream=task["stream"], hedge=task["hedge"])
            async with batch as results:
                try:
                    async for result in results:
                        if result.ok:
                            tally.answer(result.index, result.completion.choices[0].message.content)
                        else:
                            tally.fail(result.error)
                finally:
                    statistics = results.statistics()
                    tally.hedges = (statistics.hedges, statistics.hedges_won)


async def _openai(task: dict[str, Any], tally: Tally) -> None:
    import openai
    import trio

    numbers = iter(range(task["n"]))
    async with openai.AsyncOpenAI(api_key=API_KEY, base_url=task["url"]) as client:

        async def one(i: int) -> None:
            if not task["stream"]:
                completion = await client.chat.completions.create(
                    model=MODEL, messages=messages(i), extra_headers=_headers(i)
                )
                tally.answer(i, completion.choices[0].message.content)
                return
            stream = await client.chat.completions.create(
                model=MODEL, messages=messages(i), extra_headers=_headers(i), stream=True
            )
            parts = []
            async with stream:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        parts.append(chunk.choices[0].delta.content)
            tally.answer(i, "".join(parts))

        async def worker() -> None:
            for i in numbers:
                try:
                    await one(i)
                except Exception as exc:
                    tally.fail(exc)

        with trio.move_on_after(task["limit"]):
            async with trio.open_nursery() as nursery:
                for _ in range(min(task["concurrency"], task["n"])):
                    nursery.start_soon(worker)


async def _litellm(task: dict[str, Any], tally: Tally) -> None:
    import asyncio

    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.callbacks = []
    litellm.success_callback = []
    litellm.failure_callback = []
    semaphore = asyncio.Semaphore(task["concurrency"])

    async def one(i: int) -> None:
        async with semaphore:
            try:
                response = await litellm.acompletion(
                    model=LITELLM_MODEL, messages=messages(i), api_base=task["url"],
                    api_key=API_KEY, extra_headers=_headers(i), stream=task["stream"],
                )  # fmt: skip
                if task["stream"]:
                    parts = []
                    async for chunk in response:
                        if chunk.choices and chunk.choices[0].delta.content:
                            parts.append(chunk.choices[0].delta.content)
                    tally.answer(i, "".join(parts))
                else:
                    tally.answer(i, response.choices[0].message.content)
            except Exception as exc:
                tally.fail(exc)

    try:
        async with asyncio.timeout(task["limit"]):
            await asyncio.gather(*(one(i) for i in range(task["n"])))
    except TimeoutError:
        pass


def client_run(task: dict[str, Any]) -> dict[str, Any]:
    """One client through one mix (in a fresh worker process)."""
    blocked: list[str] = []
    guard_network(blocked)
    tally = Tally(task["expected"])
    peer = task["peer"]
    if peer == "litellm":
        import asyncio

        os.environ.update(LITELLM_OFFLINE)
        import litellm  # noqa: F401  (imported before the clock starts: it takes seconds)

        start = tally.start = time.perf_counter()
        asyncio.run(_litellm(task, tally))
    else:
        import trio

        __import__("openai" if peer == "openai" else "paradigm_trio")
        start = tally.start = time.perf_counter()
        trio.run(_openai if peer == "openai" else _paradigm_trio, task, tally)
    result = tally.result(task["n"], time.perf_counter() - start)
    result["blocked"] = blocked
    return result


# ---------------------------------------------------------------------- in the parent


def _expected_replies(root_url: str, url: str) -> list[str]:
    """The mock's reply to each of the 20 prompts (no faults: configured before)."""
    replies = []
    for i in range(len(NAMES)):
        data = http_json(
            "POST", url + "/chat/completions", {"model": MODEL, "messages": messages(i)}
        )
        replies.append(data["choices"][0]["message"]["content"])
    http_json("POST", root_url + "/_mock/reset")
    return replies


def _prepare(root_url: str, mix: Mix, n: int) -> None:
    http_json("POST", root_url + "/_mock/reset")
    http_json(
        "POST",
        root_url + "/_mock/config",
        {"seed": SEED, "latency": LATENCY, "token_delay": TOKEN_DELAY, "retry_after": 1.0,
         "faults": mix.faults},
    )  # fmt: skip
    if mix.script is not None:
        for i in range(n):
            key = idempotency_key(custom_id(i))
            http_json("POST", root_url + "/_mock/script", {"key": key, "outcomes": mix.script(i)})


def _check_script(root_url: str, mix: Mix, n: int) -> str | None:
    """For a scripted mix: did the client's keys meet the scripts?  (A note if not.)"""
    if mix.script is None:
        return None
    records = http_json("GET", root_url + "/_mock/requests", timeout=60)["data"]
    first = {r["key"]: r["outcome"] for r in records if r["attempt"] == 1}
    expected = {}
    for i in range(n):
        entry = mix.script(i)[0]
        expected[idempotency_key(custom_id(i))] = (
            entry["kind"] if isinstance(entry, dict) else entry
        )
    missed = [key for key, outcome in first.items() if expected.get(key) != outcome]
    if not missed:
        return None
    return f"{len(missed)} of {len(first)} requests did not meet their script (keys differ?)"


def _time_to(result: dict[str, Any], answers: int) -> float | None:
    """When the run held ``answers`` answers (seconds from its start), if it ever did."""
    times = result.get("times") or []
    if answers <= 0:
        return 0.0
    return times[answers - 1] if len(times) >= answers else None


def _read_timeout() -> str:
    import paradigm_trio as pt

    seconds = pt.Timeouts().read
    return "no limit" if seconds is None else f"{seconds:g} s"


def _failure_kinds(result: dict[str, Any]) -> str:
    kinds = sorted(result["errors"].items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {count}" for name, count in kinds) or "-"


def _client_run(
    server: Any, mix: Mix, peer: str, n: int, limit: float, expected: list[str]
) -> dict[str, Any]:
    """One client through one mix, on the mock freshly reset and configured for it."""
    _prepare(server.root_url, mix, n)
    task = {"kind": "goodput", "peer": peer, "url": server.url, "n": n,
            "concurrency": CONCURRENCY, "stream": mix.stream, "limit": limit,
            "expected": expected, "hedge": peer == "paradigm-trio-hedged"}  # fmt: skip
    result = run_worker(task, timeout=limit + 90)
    if result.get("unfinished"):
        result["wall"] = limit  # cut: stopping takes a few ms more, not counted
    result["sent"] = http_json("GET", server.root_url + "/_mock/stats")["total"]
    return result


def _hedge_rounds(
    server: Any,
    results: dict[tuple[str, str], dict[str, Any]],
    n: int,
    limits: dict[str, float],
    expected: list[str],
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """paradigm-trio's runs without and with ``hedge=True``: the first round's (in
    ``results``) and ``HEDGE_ROUNDS - 1`` more, alternating, in every mix but the
    streamed one (whose plain run waits out a stall's read timeout every time)."""
    rounds = {(mix.key, peer): [results[(mix.key, peer)]] for mix in MIXES for peer in PAIR}
    for _ in range(HEDGE_ROUNDS - 1):
        for mix in MIXES:
            if mix.stream:
                continue
            for peer in PAIR:
                result = _client_run(server, mix, peer, n, limits[mix.key], expected)
                rounds[(mix.key, peer)].append(result)
    return rounds


def _goodput(result: dict[str, Any]) -> float:
    """Answers per second of the run's wall time."""
    return result["ok"] / result["wall"] if result["wall"] else 0.0


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median goodput (answers per second) among ``runs`` (none crashed)."""
    ordered = sorted(runs, key=_goodput)
    return ordered[(len(ordered) - 1) // 2]


def _walls(runs: list[dict[str, Any]]) -> str:
    """The wall times of ``runs``, in the order they ran (the machine's noise, shown)."""
    return ", ".join(f"{run['wall']:.2f}" for run in runs)


def _hedge_verdicts(rounds: dict[tuple[str, str], list[dict[str, Any]]]) -> tuple[Table, Target]:
    """``hedge=True`` against the plain run of paradigm-trio, per mix: never less goodput."""
    table = Table(
        "paradigm-trio with `hedge=True` against without, per mix (the run of median "
        "answers/s of each)",
        ["mix", "runs", "answers", "hedged answers", "wall s", "hedged wall s",
         "wall s, all runs", "hedged wall s, all runs", "answers/s", "hedged answers/s",
         "sent", "hedged sent", "hedges (won)", "met"],
        align="lrrrrrllrrrrll",
    )  # fmt: skip
    met_all: bool | None = True
    summary = []
    for mix in MIXES:
        runs = [rounds[(mix.key, peer)] for peer in PAIR]
        if any("failed" in run for peer_runs in runs for run in peer_runs):
            table.rows.append([mix.key, *[None] * 12, "not measured"])
            met_all = None if met_all is not False else False
            continue
        plain, hedged = (_median_run(peer_runs) for peer_runs in runs)
        ratio = _goodput(hedged) / _goodput(plain) if _goodput(plain) else 1.0
        fewest = min(run["ok"] for run in runs[1])
        met = fewest >= max(run["ok"] for run in runs[0]) and ratio >= HEDGE_GOODPUT_FLOOR
        if met_all is not None:
            met_all = met_all and met
        sent, won = hedged.get("hedges") or (0, 0)
        table.rows.append([
            mix.key, len(runs[0]), plain["ok"], hedged["ok"], plain["wall"], hedged["wall"],
            _walls(runs[0]), _walls(runs[1]),
            f"{_goodput(plain):.1f}", f"{_goodput(hedged):.1f}", plain["sent"], hedged["sent"],
            f"{sent} ({won})", "**yes**" if met else "**no**",
        ])  # fmt: skip
        summary.append(f"{mix.key} {hedged['ok']}/{plain['ok']} answers, {ratio:.2f}x answers/s")
    table.notes.append(
        "*met*: with `hedge=True` paradigm-trio obtains, in each of its runs, at least as "
        "many answers as in any without, and its median answers per second of wall time are "
        f"at least {HEDGE_GOODPUT_FLOOR:.0%} of the median without (the rest is the shared "
        "machine's noise).  *runs*: of each, alternating; the streamed mix runs once (its "
        "plain run waits out a stall's read timeout every time).  *hedges (won)*: hedges "
        "sent, and those whose answer came first (`BatchStatistics.hedges`, `hedges_won`)."
    )
    target = Target(
        "goodput under faults: hedging never lowers it",
        f"with `hedge=True`, as many answers and >= {HEDGE_GOODPUT_FLOOR:.0%} of the answers/s "
        "of the same mix without, in every mix",
        "hedged / plain: " + "; ".join(summary),
        met_all,
    )
    return table, target


def run(quick: bool) -> Section:
    n = 200 if quick else 500
    limits = {mix.key: mix.limits[0 if quick else 1] for mix in MIXES}
    section = Section(
        "goodput",
        "7. Goodput under faults",
        f"`benchmarks/goodput.py`: {n} requests per mix at concurrency {CONCURRENCY} "
        f"(paradigm-trio's default) against `python -m mock_server` (latency {LATENCY * 1000:.0f}"
        f" ms, {TOKEN_DELAY * 1000:g} ms between streamed chunks, seed {SEED}), each client "
        "with its defaults, each run in a fresh process on a freshly reset mock.  Every "
        "request carries the same `Idempotency-Key` whatever the client, so every client "
        "meets exactly the same faults.  *answers* are replies whose text is exactly the "
        "mock's reply (a truncated one is a failure); *unfinished* were still running at the "
        "run's time limit (then *wall s* is the limit); *sent* is what the server saw, "
        "retries included.  A *stall* is the mock's `stream_stall` (some chunks, then "
        "silence on an open connection); recovering from one takes a client its read "
        f"timeout (paradigm-trio: {_read_timeout()} of silence; openai and LiteLLM: 600 s)"
        + (", longer than quick mode's limits." if quick else ".")
        + "  paradigm-trio also runs each mix with `hedge=True` (hedged requests, "
        "otherwise its defaults), beside its plain run and alternating with it, "
        f"{HEDGE_ROUNDS} times each: hedging must never lower goodput.",
    )
    table = Table(
        f"{n} requests per mix, concurrency {CONCURRENCY}, time limit per run "
        + ", ".join(f"{key} {limit:.0f} s" for key, limit in limits.items()),
        ["mix", "client", "answers", "failures", "unfinished", "wall s", "sent",
         "failures by kind"],
        align="llrrrrrl",
    )  # fmt: skip
    verdicts = Table(
        "paradigm-trio against the best peer, per mix",
        ["mix", "answerable", "best peer answers", "paradigm-trio answers",
         "fastest peer s", "paradigm-trio s", "paradigm-trio s to best peer's answers",
         "met"],
        align="lrrrrrrl",
    )  # fmt: skip
    results: dict[tuple[str, str], dict[str, Any]] = {}
    blocked: set[str] = set()
    with mock_process("--seed", str(SEED), "--latency", str(LATENCY)) as server:
        expected = _expected_replies(server.root_url, server.url)
        for mix in MIXES:
            limit = limits[mix.key]
            for peer in CLIENTS:
                result = _client_run(server, mix, peer, n, limit, expected)
                note = _check_script(server.root_url, mix, n)
                if note:
                    table.notes.append(f"{mix.key}, {peer}: {note}.")
                results[(mix.key, peer)] = result
                blocked.update(result.get("blocked", ()))
                if "failed" in result:
                    table.rows.append([mix.key, LABELS[peer], None, None, None, None,
                                       result["sent"], result["failed"]])  # fmt: skip
                else:
                    table.rows.append([
                        mix.key, LABELS[peer], result["ok"], result["failures"],
                        result["unfinished"], result["wall"], result["sent"],
                        _failure_kinds(result),
                    ])  # fmt: skip
        rounds = _hedge_rounds(server, results, n, limits, expected)
    hedging, hedge_target = _hedge_verdicts(rounds)
    section.tables += [table, verdicts, hedging]
    table.notes += [f"**{mix.key}**: {mix.label}." for mix in MIXES]
    table.notes.append(
        "No connection or DNS look-up off 127.0.0.1 was attempted by any client."
        if not blocked
        else "Refused connections off 127.0.0.1: " + ", ".join(sorted(blocked)) + "."
    )

    met_all: bool | None = True
    summary = []
    for mix in MIXES:
        pt = results[(mix.key, "paradigm-trio")]
        peers = [results[(mix.key, p)] for p in PEERS]
        peers = [p for p in peers if "failed" not in p]
        answerable = sum(mix.answerable(i) for i in range(n))
        if "failed" in pt or not peers:
            verdicts.rows.append(
                [mix.key, answerable, None, None, None, None, None, "not measured"]
            )
            met_all = None if met_all is not False else False
            summary.append(f"{mix.key} not measured")
            continue
        best = max(p["ok"] for p in peers)
        fastest = min(p["wall"] for p in peers)
        matched = _time_to(pt, best)
        met = matched is not None and matched <= fastest
        if not met:
            met_all = False
        verdicts.rows.append([mix.key, answerable, best, pt["ok"], fastest, pt["wall"],
                              matched, "**yes**" if met else "**no**"])  # fmt: skip
        summary.append(
            f"{mix.key} {pt['ok']}/{best} answers, {pt['wall']:.1f}/{fastest:.1f} s"
            + (f" ({best} answers at {matched:.1f} s)" if matched is not None else "")
            + ("" if met else " (no)")
        )
    verdicts.notes += [
        "Peers whose run crashed or was killed are left out of *best* and *fastest*; a run "
        "cut by the time limit counts with the limit as its time.",
        "*met*: paradigm-trio held at least as many answers as the best peer's final count "
        "no later than the fastest peer finished.  Answers beyond that count are ones the "
        "peers gave up on (their retries spent): each needed one more retry, often one more "
        "server-requested `Retry-After`, so they arrive that much later and *paradigm-trio "
        "s* (all answers) can exceed *fastest peer s*.",
    ]
    section.targets.append(
        Target(
            "goodput under faults (blip, 429s, mixed, streamed)",
            "paradigm-trio obtains at least as many answers as the best peer, and holds "
            "that many no later than the fastest peer finishes, in every mix",
            "paradigm-trio / best peer: " + "; ".join(summary),
            met_all,
        )
    )
    section.targets.append(hedge_target)
    return section
