"""One measurement in a fresh process: ``python -m benchmarks._worker '<task JSON>'``.

Prints the result as one JSON line on stdout (the last line starting with ``{``).  With
``"cprofile": true`` in the task, the measurement runs under :mod:`cProfile` and the
result carries the top functions as text under ``"profile"``.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any


def _run(task: dict[str, Any]) -> dict[str, Any]:
    kind = task["kind"]
    if kind == "drive":
        from ._peers import drive

        return drive(task)
    if kind == "memory":
        from .memory import measure

        return measure(task)
    if kind == "ratelimit":
        from .rate_limit import client_run

        return client_run(task)
    if kind == "goodput":
        from .goodput import client_run as goodput_run

        return goodput_run(task)
    if kind == "embeddings":
        from .embeddings import client_run as embeddings_run

        return embeddings_run(task)
    if kind == "sync":
        from .sync_bridge import client_run as sync_run

        return sync_run(task)
    raise ValueError(f"unknown task kind {kind!r}")


def main() -> None:
    task = json.loads(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # scaling opens thousands of connections
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if task.get("cprofile"):
        import cProfile
        import io
        import pstats

        profiler = cProfile.Profile()
        result = profiler.runcall(_run, task)
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(20)
        result["profile"] = text.getvalue()
    else:
        result = _run(task)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
