"""The HTML report's page, from records written here (no run): what it shows apart,
groups, leaves out and marks."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest

from paradigm_trio.cli import _run_batch
from paradigm_trio.cli._report import STOPPED_NOTE, render
from paradigm_trio.cli._report_data import CHAT, EMBEDDINGS, RunData

START = 1_796_000_000.0


def _record(custom_id: str, at: float, *, elapsed: float = 0.5, endpoint: str | None = CHAT,
            error: tuple[str, int | None, str] | None = None,
            failures: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    record: dict[str, Any] = {
        "custom_id": custom_id,
        "response": None,
        "error": None,
        "attempts": 1 + len(failures or []),
        "elapsed": elapsed,
        "started_at": START + at,
        "finished_at": START + at + elapsed,
        "concurrency": 8,
        "failures": failures or [],
    }
    if endpoint is not None:
        record["endpoint"] = endpoint
    if error is None:
        kind = "list" if endpoint == EMBEDDINGS else "chat.completion"
        usage = {"prompt_tokens": 10, "completion_tokens": 0 if kind == "list" else 20}
        record["response"] = {"status_code": 200, "body": {"object": kind, "usage": usage}}
    else:
        code, status, message = error
        if status is not None:
            record["response"] = {"status_code": status, "body": {"error": {"code": code}}}
        record["error"] = {"code": code, "message": message}
    return record


def _page(records: list[dict[str, Any]]) -> str:
    data = RunData()
    for record in records:
        data.add(record)
    return render(data, "run")


def _cell(page: str, label: str) -> str:
    match = re.search(rf"<td>{re.escape(label)}</td><td class=\"n\">([^<]*)</td>", page)
    assert match, label
    return match.group(1)


def _rows(page: str, heading: str) -> list[list[str]]:
    """The cells of the table after ``heading``."""
    table = page[page.index(heading) :]
    table = table[: table.index("</table>")]
    return [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in table.split("<tr>")[2:]]


def test_chat_and_embeddings_are_shown_apart() -> None:
    chat = [_record(f"c{i}", i * 0.5, elapsed=2.0) for i in range(20)]
    embed = [_record(f"e{i}", i * 0.5, elapsed=0.1, endpoint=EMBEDDINGS) for i in range(10)]
    old = _record("old", 3.0, endpoint=None)  # an older file's record: told by its answer
    failed = _record("e-bad", 4.0, endpoint=EMBEDDINGS, error=("server_error", 500, "boom"))
    page = _page([*chat, *embed, old, failed])
    rows = {row[0]: row for row in _rows(page, "<h2>By endpoint</h2>")}
    assert set(rows) == {CHAT, EMBEDDINGS}
    assert rows[CHAT][1:5] == ["21", "21", "0", "0"]
    assert rows[EMBEDDINGS][1:5] == ["11", "10", "1", "0"]
    assert rows[CHAT][6] == "2 s / 2 s / 2 s"
    assert rows[EMBEDDINGS][6] == "0.1 s / 0.1 s / 0.1 s"
    assert "<h2>Latency distribution: chat</h2>" in page
    assert "<h2>Latency distribution: embeddings</h2>" in page
    assert "chat succeeded" in page  # the throughput plot's legend: a line each


def test_one_endpoint_is_named_in_the_summary() -> None:
    page = _page([_record(f"c{i}", i) for i in range(5)])
    assert _cell(page, "endpoint") == CHAT
    assert "By endpoint" not in page
    assert "<h2>Latency distribution</h2>" in page


def test_failures_are_grouped_by_cause_with_a_count_and_an_example() -> None:
    wrong_key = ("invalid_api_key", 401, "Incorrect API key provided")
    records = [_record(f"k{i}", i * 0.1, error=wrong_key) for i in range(30)]
    records += [_record(f"s{i}", 5 + i, error=("server_error", 500, f"down {i}")) for i in range(2)]
    records.append(_record("gone", 9, error=("APIConnectionError", None, "reset by peer")))
    records.append(_record("ok", 1))
    page = _page(records)
    groups = _rows(page, "Failed requests: 33, by cause")
    assert groups == [
        ["invalid_api_key", "401", "30", "Incorrect API key provided"],
        ["server_error", "500", "2", "down 0"],
        ["APIConnectionError", "-", "1", "reset by peer"],
    ]
    listed = [row[0] for row in _rows(page, "Some failed requests")]
    assert listed == ["k0", "k1", "k2", "s0", "s1", "gone"]  # not thirty identical rows


def test_what_has_nothing_to_show_is_left_out() -> None:
    page = _page([_record(f"c{i}", i) for i in range(10)])  # no 429, no failure
    assert "<h2>Throughput over time</h2>" in page
    assert "429s / s" not in page
    assert "429s over time" not in page
    assert "Failed requests" not in page
    assert "Retries by cause" not in page
    failures_only = _page([_record("x", 0, error=("server_error", 500, "down"))])
    assert "slowest successful" not in failures_only
    assert "Latency distribution" not in failures_only
    limited = [{"at": 0.1, "status": 429, "cause": "429", "wait": 1.0}]
    with_429 = _page([_record("c", 0, elapsed=2.0, failures=limited), _record("d", 1)])
    assert "<h2>Throughput and 429s over time</h2>" in with_429
    assert "429s / s" in with_429


def test_the_gap_between_a_run_and_its_resume_is_marked_and_not_counted() -> None:
    first = [_record(f"a{i}", i, elapsed=1.0) for i in range(30)]  # 0 to 30 s
    resumed = [_record(f"b{i}", 600 + i, elapsed=1.0) for i in range(30)]  # 600 to 630 s
    page = _page([*first, *resumed])
    assert _cell(page, "time with requests in flight") == (
        "60.0 s in 2 runs, over 630.0 s (570.0 s not running)"
    )
    assert _cell(page, "successes per minute (of that time)") == "60"  # not 60 * 60 / 630
    assert "not running (interrupted, then resumed)" in page  # the plot's shaded gap
    one_run = _page(first)
    assert _cell(one_run, "time with requests in flight") == "30.0 s"
    assert "not running" not in one_run


def test_hedged_cached_and_deduplicated_answers_are_counted_and_marked() -> None:
    records = [_record(f"c{i}", i) for i in range(6)]
    records[0]["hedged"] = True
    records[1]["cached"] = True
    records[2]["cached"] = True
    records[3]["deduplicated"] = True
    records[4]["elapsed"] = 3.0  # the slowest, plain
    shared_failure = _record("dup-bad", 7, error=("server_error", 500, "down"))
    shared_failure["deduplicated"] = True  # a duplicate of a line that failed
    page = _page([*records, shared_failure])
    assert _cell(page, "answered by a hedge (hedge=)") == "1"
    assert _cell(page, "answered from the cache, not sent (cache=)") == "2"
    assert _cell(page, "the answer of an identical line, not sent (dedupe=)") == "2"
    slowest = {row[0]: row[-1] for row in _rows(page, "slowest successful")}
    assert slowest == {"c0": "hedged", "c1": "cached", "c2": "cached", "c3": "deduplicated",
                       "c4": "", "c5": ""}  # fmt: skip
    assert "<th>answer</th>" in page
    assert [row[-1] for row in _rows(page, "Some failed requests")] == ["deduplicated"]


def test_a_run_without_marks_has_no_mark_rows_nor_column() -> None:
    plain = _record("c", 0)
    plain["hedged"] = False  # false (or absent): no mark
    page = _page([plain, _record("d", 1)])
    assert "answered by a hedge" not in page
    assert "not sent" not in page
    assert "<th>answer</th>" not in page


def test_the_page_of_a_stopped_run_says_so() -> None:
    data = RunData()
    for i in range(3):
        data.add(_record(f"r{i}", at=i))
    note = f'<p class="stopped">{html.escape(STOPPED_NOTE)}</p>\n'
    stopped = render(data, "run (stopped)", stopped=True)
    assert note in stopped
    assert _cell(stopped, "records") == "3"
    finished = render(data, "run")
    assert 'class="stopped"' not in finished
    assert stopped.replace(note, "").replace("run (stopped)", "run") == finished  # (only that)


def test_a_second_ctrl_c_while_the_page_is_drawn_skips_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    drawn: list[bool] = []

    def interrupted(records: Path, page: Path, *, stopped: bool = False) -> None:
        drawn.append(stopped)
        raise KeyboardInterrupt  # Ctrl-C again, while matplotlib draws

    monkeypatch.setattr(_run_batch, "write_html", interrupted)
    out, page = tmp_path / "out.jsonl", tmp_path / "run.html"
    assert _run_batch._write_page(out, str(page), interrupted=True, code=130) == 130
    err = capsys.readouterr().err
    assert drawn == [True]
    assert "Writing the report of the run so far (Ctrl-C again to skip it)" in err
    assert f"Report not written (interrupted): paradigm-trio report {out} -o {page}" in err
    assert not page.exists()
