"""Scenario 3: scaling, wall time against the ideal ``ceil(N / C) * latency``.

The server is ``benchmarks._rawserver`` in its own process: it answers every request
after exactly ``latency`` seconds (an event-loop timer), so the only way to miss the ideal
is the client (connection set-up, scheduling, CPU).  Runs are cold: the time includes
opening the ``C`` connections, as a real batch would.  Each size first runs the *floor*
(``_peers``: raw trio sockets, no HTTP library): the ratio no trio client can beat on this
machine, since the server, the kernel and trio's scheduler take their share of it too.
Each peer runs in a fresh process, stopped after ``LIMIT`` seconds (requests not finished
by then are counted as *unfinished*).
"""

from __future__ import annotations

import math
from typing import Any

from ._common import PEER_LABELS, PEERS, Section, Table, Target, raw_server, run_worker
from ._profile import profile


def cases(quick: bool) -> list[tuple[int, int, float, float]]:
    """``(requests, concurrency, latency, time limit)`` per size."""
    if quick:
        return [(2_000, 200, 0.1, 10.0), (4_000, 2_000, 1.0, 10.0)]
    return [(2_000, 200, 0.1, 30.0), (20_000, 2_000, 1.0, 60.0)]


def _floor(cpu: float, n: int, c: int, ideal: float) -> float:
    """The best ratio a client of ``cpu`` seconds for ``n`` requests could reach."""
    return (ideal + c * cpu / n) / ideal


def _measured(ratio: float | None, floor: float | None) -> str:
    """The target's measured text: the ratio, and the floor's in the same run."""
    if ratio is None:
        return "not measured"
    if ratio == math.inf:
        return "errors or unfinished"
    return f"{ratio:.2f}" + ("" if floor is None else f" (bare sockets: {floor:.2f})")


def _task(url: str, peer: str, n: int, c: int, limit: float) -> dict[str, Any]:
    return {"kind": "drive", "peer": peer, "url": url, "n": n, "concurrency": c, "limit": limit}


def run(quick: bool) -> Section:
    section = Section(
        "scaling",
        "3. Scaling: wall time against the ideal",
        "Requests of fixed latency at high concurrency against the raw server (out of "
        "process); *ratio* = wall time / `ceil(N/C) * latency` (1.00 is perfect).  Cold "
        "start: connection set-up is included.  *errors* are failed requests, *unfinished* "
        "those still pending when the run was stopped at the time limit."
        + ("  Quick mode: the large size is cut to 4,000 requests." if quick else ""),
    )
    for n, c, latency, limit in cases(quick):
        ideal = math.ceil(n / c) * latency
        table = Table(
            f"{n:,} requests of {latency * 1000:.0f} ms at concurrency {c:,} "
            f"(ideal {ideal:.1f} s, limit {limit:.0f} s)",
            ["client", "wall s", "ratio", "ok", "errors", "unfinished", "client CPU s",
             "CPU floor", "first error"],
        )  # fmt: skip
        pt_ratio = floor_ratio = None
        with raw_server(latency) as server:
            for peer in ("floor", *PEERS):
                result = run_worker(_task(server.url, peer, n, c, limit), timeout=limit + 10)
                if "failed" in result:
                    table.rows.append([PEER_LABELS[peer], None, None, None, None, None, None,
                                       None, result["failed"]])  # fmt: skip
                    continue
                finished = result["unfinished"] == 0
                wall = result["wall"]
                ratio = wall / ideal
                table.rows.append([
                    PEER_LABELS[peer],
                    wall if finished else f"> {limit:.0f} (stopped)",
                    ratio if finished else f"> {limit / ideal:.1f}",
                    result["ok"], result["errors"], result["unfinished"], result["cpu"],
                    _floor(result["cpu"], n, c, ideal),
                    (result["first_error"] or "")[:80] or None,
                ])  # fmt: skip
                if peer == "paradigm-trio":
                    pt_ratio = ratio if finished and not result["errors"] else math.inf
                elif peer == "floor" and finished and not result["errors"]:
                    floor_ratio = ratio
            section.tables.append(table)
            met = pt_ratio is not None and pt_ratio <= 1.10
            section.targets.append(
                Target(
                    f"scaling ratio, {n:,} x {latency * 1000:.0f} ms @ c={c:,}",
                    "<= 1.10, no errors",
                    _measured(pt_ratio, floor_ratio),
                    None if pt_ratio is None else met,
                )
            )  # fmt: skip
            if pt_ratio is not None and not met and quick:
                section.profile = "(quick mode: no profile; the full run profiles the misses)"
            elif pt_ratio is not None and not met:
                text = profile(_task(server.url, "paradigm-trio", n, c, limit), timeout=limit + 10)
                section.profile += (
                    f"paradigm-trio, {n:,} x {latency * 1000:.0f} ms @ c={c:,}:\n{text}\n\n"
                )
    section.tables[-1].notes.append(
        "Client CPU s close to the wall time means the client process saturated its core: "
        "at that point the client, not the server or the network, sets the pace."
    )
    section.tables[-1].notes.append(
        "*floor*: the same workload with no HTTP library (raw trio sockets, a request "
        "built with an f-string, the answer read to its `Content-Length` and decoded with "
        "`json.loads`; no retries, timeouts or validation).  Its ratio is what the server, "
        "the kernel, trio's scheduler and opening the connections cost on this machine: no "
        "trio client can go below it."
    )
    section.tables[-1].notes.append(
        "*CPU floor*: about the best ratio a client of this CPU per request `p` (client "
        "CPU s / N) can reach: the C answers of a wave are handled one after another on "
        "one core, so the next wave's requests go out spread over at least `C * p`; the "
        "spread never shrinks (each answer comes back as late as its request went out), so "
        "the last wave ends at least `C * p` after the ideal: `(ideal + C * p) / ideal`.  "
        "A floor of 1.05 needs `p` of at most 0.25 ms at both sizes here, before the "
        "connections are opened and before any answer waits for others being handled."
    )
    return section
