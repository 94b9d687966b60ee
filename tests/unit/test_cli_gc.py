"""The CLI's garbage-collector setting (``paradigm_trio.cli._gc``): raised for a run, never
lowered, never turned back on."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import patch

import pytest

from paradigm_trio.cli import _gc, _run_batch
from paradigm_trio.cli import main as cli_main


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        if enabled:
            gc.enable()
        else:
            gc.disable()


def test_the_young_generation_threshold_is_raised() -> None:
    gc.set_threshold(700, 10, 10)
    _gc.fewer_collections()
    assert gc.get_threshold() == (_gc.GEN0_THRESHOLD, 10, 10)


def test_a_higher_threshold_is_kept() -> None:
    gc.set_threshold(50_000, 7, 3)
    _gc.fewer_collections()
    assert gc.get_threshold() == (50_000, 7, 3)


def test_a_collector_turned_off_stays_off() -> None:
    gc.set_threshold(700, 10, 10)
    gc.disable()
    _gc.fewer_collections()
    assert not gc.isenabled()
    assert gc.get_threshold() == (700, 10, 10)
    gc.enable()
    gc.set_threshold(0, 10, 10)  # (the other way to turn it off)
    _gc.fewer_collections()
    assert gc.get_threshold() == (0, 10, 10)


def test_a_batch_runs_with_the_raised_threshold(tmp_path: Path) -> None:
    gc.set_threshold(700, 10, 10)
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    seen: list[tuple[int, int, int]] = []
    real_run = _run_batch._run

    async def run(*args: object) -> object:
        seen.append(gc.get_threshold())
        return await real_run(*args)  # type: ignore[arg-type]

    with patch.object(_run_batch, "MOCK_LATENCY", "fixed:0"), patch.object(_run_batch, "_run", run):
        code = cli_main(["batch", str(src), "-o", str(out), "--mock", "--quiet"])
    assert code == 0
    assert seen == [(_gc.GEN0_THRESHOLD, 10, 10)]
    assert json.loads(out.read_text().splitlines()[0])["response"] is not None
