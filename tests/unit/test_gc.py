"""``pt.fewer_collections``: the young generation's threshold raised inside its block and
put back after it; never lowered, never turned back on.  The CLI's runs use it."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import patch

import pytest

import paradigm_trio as pt
from paradigm_trio import _gc
from paradigm_trio.cli import _run_batch
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


def test_the_young_generation_threshold_is_raised_inside_and_restored_after() -> None:
    gc.set_threshold(700, 10, 10)
    with pt.fewer_collections():
        assert gc.get_threshold() == (_gc.GEN0_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)
    with pt.fewer_collections(50_000):
        assert gc.get_threshold() == (50_000, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_it_is_restored_when_the_block_raises() -> None:
    gc.set_threshold(700, 10, 10)
    with pytest.raises(KeyError), pt.fewer_collections():
        raise KeyError("x")
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_is_kept() -> None:
    gc.set_threshold(50_000, 7, 3)
    with pt.fewer_collections():
        assert gc.get_threshold() == (50_000, 7, 3)
    assert gc.get_threshold() == (50_000, 7, 3)


def test_a_collector_turned_off_stays_off() -> None:
    gc.set_threshold(700, 10, 10)
    gc.disable()
    with pt.fewer_collections():
        assert not gc.isenabled()
        assert gc.get_threshold() == (700, 10, 10)
    gc.enable()
    gc.set_threshold(0, 10, 10)  # (the other way to turn it off)
    with pt.fewer_collections():
        assert gc.get_threshold() == (0, 10, 10)


def test_a_threshold_changed_inside_the_block_is_left_as_it_is() -> None:
    gc.set_threshold(700, 10, 10)
    with pt.fewer_collections():
        gc.set_threshold(123, 10, 10)
    assert gc.get_threshold() == (123, 10, 10)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10000"])
def test_a_threshold_that_is_not_a_positive_integer_is_refused(bad: object) -> None:
    gc.set_threshold(700, 10, 10)
    with pytest.raises(ValueError, match="positive integer"), pt.fewer_collections(bad):  # type: ignore[arg-type]
        pass
    assert gc.get_threshold() == (700, 10, 10)


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
    assert gc.get_threshold() == (700, 10, 10)  # (put back when the run ended)
