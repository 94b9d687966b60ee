"""The Dask recipe of docs/howto-several-workers.md, run as written.

Its code block (``:name: recipe-dask``) is executed, then ``run_on_dask`` runs a batch as
four partitions on a ``LocalCluster`` of two worker processes, each partition in its own
``trio.run`` with a client that shares one Redis quota, against a mock process with that
quota.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from ..redis_helpers import RedisServer
from .conftest import QUOTA, mock_outcomes

DOC = Path(__file__).resolve().parents[2] / "docs" / "howto-several-workers.md"


def _recipe() -> dict[str, Any]:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"```\{code-block\} python\n:name: recipe-dask\n\n(.*?)```", text, re.S)
    assert match, "the recipe-dask code block is missing"
    namespace: dict[str, Any] = {"__name__": "dask_recipe"}  # not importable: pickled by value
    exec(compile(match.group(1), str(DOC), "exec"), namespace)
    return namespace


@pytest.mark.slow
def test_the_dask_recipe_shares_the_quota_across_worker_processes(
    quota_mock: str, redis_server: RedisServer
) -> None:
    n = 80
    lines = [
        {"custom_id": f"d{i}", "messages": [{"role": "user", "content": f"Hello {i}"}]}
        for i in range(n)
    ]
    start = time.monotonic()
    records = _recipe()["run_on_dask"](
        lines, partitions=4, base_url=quota_mock, api_key="sk-dask-test",
        redis_url=redis_server.url, rpm=QUOTA,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert sorted(r["custom_id"] for r in records) == sorted(line["custom_id"] for line in lines)
    assert all(r["error"] is None and r["text"] for r in records)
    outcomes = mock_outcomes(quota_mock)
    assert outcomes.get("quota", 0) <= 0.01 * n, outcomes
    # Four clients, each with the whole quota: together no faster than the quota.
    assert elapsed >= n / (QUOTA / 60) * 0.9
