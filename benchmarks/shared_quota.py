"""Scenario 9: three workers on one quota, shared in Redis or not, with unequal work.

A mock process has a quota of ``Q`` requests a minute (a bucket of ``Q``), spent just
before the run (``Q`` requests sent at once: the quota was in use).  Three
``paradigm-trio batch`` processes then run inputs of unequal sizes (1/6, 2/6 and 3/6 of
the lines): one finishes early, one late.  Three ways to configure them:

* **shared**: each ``--rpm Q --redis URL`` (one quota in a real ``redis-server``);
* **not shared**: each ``--rpm Q`` alone (each thinks it has the whole quota);
* **static split**: each ``--rpm Q/3`` (safe, but a share left by a worker that is done
  is lost).

Figures from the mock's request log: *goodput* = requests answered 200 per minute, from
the first arrival to the last; *429s* = requests the quota refused; *failed* = lines
whose record is an error.  Run alone with ``python -m benchmarks.shared_quota [--quick]``,
or as the ``shared`` scenario of ``python -m benchmarks``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import (
    API_KEY,
    PYTHON,
    ROOT,
    Section,
    Table,
    Target,
    child_env,
    http_json,
    machine_lines,
    mock_process,
)

QUOTA = 600
SHARES = (1, 2, 3)  # sixths of the lines, per worker
MODES = ("shared", "not shared", "static split")


def _inputs(folder: Path, total: int) -> list[Path]:
    paths, start = [], 0
    for w, share in enumerate(SHARES):
        count = total * share // sum(SHARES)
        path = folder / f"in.{w}.jsonl"
        with path.open("w") as f:
            for i in range(start, start + count):
                line = {"custom_id": f"r{i}", "messages": [{"role": "user", "content": f"Hi {i}"}]}
                f.write(json.dumps(line) + "\n")
        paths.append(path)
        start += count
    return paths


def _spend_the_quota(folder: Path, env: dict[str, str]) -> None:
    """Send QUOTA requests at once, unlimited: the mock's bucket is then empty."""
    path = folder / "spend.jsonl"
    with path.open("w") as f:
        for i in range(QUOTA):
            f.write(
                json.dumps({"custom_id": f"s{i}", "messages": [{"role": "user", "content": "x"}]})
            )
            f.write("\n")
    out = folder / f"spend.{time.time_ns()}.jsonl"
    argv = [PYTHON, "-m", "paradigm_trio", "batch", str(path), "-o", str(out),
            "--concurrency", "64", "--max-attempts", "1", "-q"]  # fmt: skip
    subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120, check=False)  # fmt: skip


def _run_mode(mode: str, folder: Path, inputs: list[Path], redis_url: str) -> dict[str, Any]:
    with mock_process("--rpm", str(QUOTA), "--latency", "fixed:0.05") as mock:
        env = {**child_env(), "PARADIGM_BASE_URL": mock.url, "PARADIGM_API_KEY": API_KEY}
        _spend_the_quota(folder, env)
        before = len(http_json("GET", f"{mock.root_url}/_mock/requests")["data"])
        rpm = QUOTA / len(inputs) if mode == "static split" else QUOTA
        name = f"bench-{time.time_ns()}"
        procs = []
        for w, path in enumerate(inputs):
            argv = [PYTHON, "-m", "paradigm_trio", "batch", str(path), "-o",
                    str(folder / f"{mode.replace(' ', '-')}.{w}.jsonl"), "--rpm", f"{rpm:g}",
                    "--concurrency", "16", "-q"]  # fmt: skip
            if mode == "shared":
                argv += ["--redis", redis_url, "--redis-name", name]
            procs.append(subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))  # fmt: skip
        for proc in procs:
            proc.wait(timeout=600)
        log = http_json("GET", f"{mock.root_url}/_mock/requests")
    entries = log["data"][before:]
    ok = [e["arrival"] for e in entries if e["outcome"] == "ok"]
    failed = 0
    for w in range(len(inputs)):
        out = folder / f"{mode.replace(' ', '-')}.{w}.jsonl"
        failed += sum(json.loads(line)["error"] is not None for line in out.open())
    span = max(ok) - min(ok) if len(ok) > 1 else 0.0
    return {
        "mode": mode,
        "rpm": rpm,
        "requests": len(entries),
        "ok": len(ok),
        "quota_429": sum(e["outcome"] == "quota" for e in entries),
        "failed": failed,
        "span": span,
        "goodput": len(ok) / span * 60 if span else 0.0,
    }


def measure(quick: bool) -> list[dict[str, Any]]:
    """Run the three modes (each against a fresh mock); one result each."""
    sys.path.insert(0, str(ROOT))
    from tests.redis_helpers import RedisServer

    total = 180 if quick else 360
    redis = RedisServer()
    redis.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            inputs = _inputs(folder, total)
            return [_run_mode(mode, folder, inputs, redis.url) for mode in MODES]
    finally:
        redis.close()


def run(quick: bool) -> Section:
    results = measure(quick)
    section = Section(
        "shared",
        "10. Several workers, one quota (Redis)",
        f"`benchmarks/shared_quota.py`: three `paradigm-trio batch` processes on unequal "
        f"inputs ({'/'.join(str(s) for s in SHARES)} sixths of the lines) against a mock "
        f"process with a quota of {QUOTA} requests a minute: sharing it in Redis, each "
        "alone with the whole quota, and a static split of a third each.",
    )
    table = Table(
        f"3 workers, quota {QUOTA}/min",
        ["mode", "--rpm each", "requests sent", "429s", "failed", "seconds", "goodput/min",
         "% of quota"],
    )  # fmt: skip
    for r in results:
        table.rows.append([r["mode"], r["rpm"], r["requests"], r["quota_429"], r["failed"],
                           r["span"], r["goodput"], 100 * r["goodput"] / QUOTA])  # fmt: skip
    section.tables.append(table)
    shared = results[0]
    share = shared["quota_429"] / max(1, shared["requests"])
    section.targets.append(
        Target("shared quota: 429s", "<= 1 %", f"{100 * share:.1f} %", share <= 0.01)
    )
    section.targets.append(
        Target("shared quota: goodput", f">= 90 % of {QUOTA}/min",
               f"{100 * shared['goodput'] / QUOTA:.0f} %", shared["goodput"] >= 0.9 * QUOTA)
    )  # fmt: skip
    return section


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    command = "python -m benchmarks.shared_quota" + (" --quick" if quick else "")
    section = run(quick)
    print(f"{section.title}\n\n{section.intro}\n")
    for table in section.tables:
        print(table.markdown())
    for target in section.targets:
        print(f"- {target.name}: {target.measured} (target {target.goal})")
    print(f"\nCommand: `{command}`")
    print("\n".join(machine_lines()))


if __name__ == "__main__":
    main()
