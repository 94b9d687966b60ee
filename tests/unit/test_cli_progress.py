"""``batch``'s progress and summary: the ETA, the last line once, the live view's colours,
failures grouped by cause (no sockets, no subprocess)."""

from __future__ import annotations

import dataclasses
import io
import json
from contextlib import redirect_stderr
from pathlib import Path

import pytest

import paradigm_trio as pt
from paradigm_trio.cli._causes import configuration_fix, failure_groups, stopped_line
from paradigm_trio.cli._live import _EMPTY, ETA_AFTER, Progress, _LiveView, eta, quota_line
from paradigm_trio.cli._run_batch import _print_summary, _summary

BASE = _EMPTY


def stats(**fields: object) -> pt.BatchStatistics:
    return dataclasses.replace(BASE, **fields)  # type: ignore[arg-type]


def test_no_eta_until_a_first_wave_and_enough_results() -> None:
    # The first wave of 64 answers all at once after 0.5 s: 1/0.5 s is no rate.
    assert eta(1, 63, 4999, 2.0) == "-"
    assert eta(ETA_AFTER - 1, 0, 100, 10.0) == "-"
    assert eta(40, 64, 100, 10.0) == "-"  # not yet a whole wave
    assert eta(64, 64, 1000, 100.0) == "10s"
    assert eta(64, 0, 0, 100.0) == "-"  # nothing left


def test_the_last_line_is_printed_once() -> None:
    out = io.StringIO()
    progress = Progress(10, 0, out, quiet=False, live=False)
    final = stats(done=10, succeeded=10, elapsed=1.0)
    progress.update(stats(done=1, succeeded=1, elapsed=0.1))  # the first line
    progress._last = float("-inf")  # (as if the interval had passed)
    progress.update(final)
    progress.update(final, force=True)  # the end of the run: nothing new to say
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[-1].startswith("10/10 100% | ok 10 failed 0")
    progress.update(stats(done=10, succeeded=9, failed=1, elapsed=1.0), force=True)
    assert len(out.getvalue().splitlines()) == 3  # something new: printed


def test_the_count_includes_earlier_runs() -> None:
    out = io.StringIO()
    progress = Progress(10, 4, out, quiet=False, live=False)
    progress.update(stats(done=2, succeeded=2, elapsed=1.0), force=True)
    assert out.getvalue().startswith("6/10 60% | ok 2 failed 0")


def _drawn(failed: int) -> str:
    from rich.console import Console
    from rich.live import Live

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, color_system="truecolor", width=120)
    progress = Progress(100, 0, io.StringIO(), quiet=False, live=False)
    progress._view = _LiveView(Live(console=console, auto_refresh=False))
    progress.update(stats(done=50, succeeded=50 - failed, failed=failed, elapsed=5.0))
    progress.close()
    return screen.getvalue()


def test_the_live_view_is_neutral_until_something_fails() -> None:
    pytest.importorskip("rich")
    calm = _drawn(0)
    assert "failed 0" in calm
    assert "\x1b[31m" not in calm  # no red
    assert "249;38;114" not in calm  # nor rich's default (pinkish red) bar
    assert "\x1b[31m" in _drawn(3)


def _write(path: Path, *records: dict[str, object]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _failed(status: int | None, code: str, message: str) -> dict[str, object]:
    response = {"status_code": status, "body": None} if status is not None else None
    return {"response": response, "error": {"code": code, "message": message}}


def test_failures_are_grouped_by_status_and_code_with_one_example(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    _write(
        out,
        {"response": {"status_code": 200}, "error": None},
        _failed(503, "service_unavailable", "first 503"),
        _failed(400, "invalid_value", "bad temperature"),
        _failed(503, "service_unavailable", "second 503"),
        _failed(None, "APIConnectionError", "reset"),
    )
    groups = failure_groups(out)
    assert groups[0] == {"status": 503, "code": "service_unavailable", "count": 2,
                         "example": "first 503"}  # fmt: skip
    assert sorted((g["status"] or 0, g["count"]) for g in groups) == [(0, 1), (400, 1), (503, 2)]
    assert configuration_fix(groups) is None


def test_one_configuration_failure_gets_its_fix_not_retry_failed(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    _write(out, *[_failed(401, "invalid_api_key", "Error code: 401 - bad key")] * 3)
    groups = failure_groups(out)
    summary = _summary(BASE, skipped=0, invalid=0, failures_total=3, groups=groups)
    summary["invalid_in_output"] = 0
    err = io.StringIO()
    with redirect_stderr(err):
        _print_summary(summary, out, interrupted=False)
    text = err.getvalue()
    assert "  3 x 401 invalid_api_key: Error code: 401 - bad key" in text
    assert "Every failure is the same 401: check PARADIGM_API_KEY" in text
    assert "rerun with --retry-failed to try them again" not in text
    assert json.loads(json.dumps(summary))["failures_by_cause"][0]["count"] == 3


def test_the_stopped_line_names_status_meaning_and_fix() -> None:
    error = pt.NotFoundError("not found", status_code=404)
    diagnosis = pt.diagnose(error)
    assert diagnosis is not None
    line = stopped_line(pt.SystematicFailureError(error, diagnosis, failures=10, sent=17))
    assert line.startswith("stopped after 17 request(s): the first 10 answers were all 404")
    assert "--base-url" in line
    assert "rerun the same command" in line
    assert "\n" not in line


def test_a_lost_shared_quota_is_one_line_even_when_quiet() -> None:
    out = io.StringIO()
    progress = Progress(10, 0, out, quiet=True, live=False)
    lost = pt.SharedQuotaUnavailable("q", "ConnectionError: refused", "local", 3,
                                     "redis://u:***@h:6379/0")  # fmt: skip
    progress.on_event(lost)
    progress.on_event(pt.SharedQuotaRestored("q", 12.0))
    first, second = out.getvalue().splitlines()
    assert first.startswith("Shared quota 'q': Redis at redis://u:***@h:6379/0 does not answer")
    assert "local share, 1/3 of --rpm/--tpm" in first
    assert second == "Shared quota 'q': Redis answers again (after 12.0s)."
    assert "waits: nothing is sent" in quota_line(dataclasses.replace(lost, fallback="wait"))
