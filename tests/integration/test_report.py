"""The HTML report: ``paradigm-trio report OUT.jsonl -o run.html`` and ``batch --report
run.html``, read as HTML and rendered by a real browser (headless Chromium)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from .browser import browser
from .test_cli import CLI, env_for, mock_url, records, run_cli, write_input

__all__ = ["mock_url"]  # (the fixture, used by name)

START = 1_796_000_000.0
HOSTILE = "<script>alert(1)</script>"


def _record(custom_id: str, *, elapsed: float, at: float, error: str | None = None,
            failures: list[dict[str, Any]] | None = None, concurrency: int = 8,
            tokens: tuple[int, int] = (10, 20)) -> dict[str, Any]:  # fmt: skip
    ok = error is None
    body = {"id": "x", "model": "m", "choices": [], "usage": {
        "prompt_tokens": tokens[0], "completion_tokens": tokens[1],
        "total_tokens": sum(tokens)}}  # fmt: skip
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": None, "body": body} if ok else None,
        "error": None if ok else {"code": error, "message": f"{error} happened"},
        "attempts": 1 + len(failures or []),
        "elapsed": elapsed,
        "started_at": START + at,
        "finished_at": START + at + elapsed,
        "concurrency": concurrency,
        "failures": failures or [],
    }


def _run_file(path: Path) -> None:
    """A 60-second run: 40 successes, 429s around 20 s that halve the limit, 2 failures,
    1 cancellation, an invalid line (no timing), and a hostile custom_id."""
    rows = []
    for i in range(40):
        limit = 8 if i < 15 else (4 if i < 30 else 5)
        failures = [{"at": 0.2, "status": 429, "cause": "429", "wait": 1.0}] if 15 <= i < 20 else []
        rows.append(_record(f"ok-{i:02d}", elapsed=0.5 + i / 100, at=i * 1.5,
                            failures=failures, concurrency=limit))  # fmt: skip
    rows[7]["elapsed"] = 9.75  # the slowest
    rows.append(_record(HOSTILE, elapsed=9.0, at=5.0))
    five_hundreds = [{"at": 0.1, "status": 500, "cause": "500", "wait": 0.5}] * 3
    rows.append(_record("bad-1", elapsed=3.0, at=30, error="InternalServerError",
                        failures=five_hundreds))  # fmt: skip
    rows.append(_record("bad-2", elapsed=1.0, at=40, error="invalid_request"))
    rows.append(_record("late", elapsed=2.0, at=58, error="cancelled"))
    invalid = {"id": "batch_req_line", "custom_id": "line-99", "response": None,
               "error": {"code": "invalid_request", "message": "line 99: invalid JSON"},
               "attempts": 0, "elapsed": 0.0}  # fmt: skip
    with path.open("w") as f:
        for row in [*rows, invalid]:
            f.write(json.dumps(row) + "\n")
        f.write('{"half-written')  # a crash mid-write: ignored


def _cell(page: str, label: str) -> str:
    match = re.search(rf"<td>{re.escape(label)}</td><td class=\"n\">([^<]*)</td>", page)
    assert match, label
    return match.group(1)


def test_report_of_a_finished_output_file(tmp_path: Path) -> None:
    out, page_path = tmp_path / "out.jsonl", tmp_path / "run.html"
    _run_file(out)
    proc = run_cli("report", str(out), "-o", str(page_path))
    assert proc.returncode == 0, proc.stderr
    page = page_path.read_text()
    assert _cell(page, "records") == "45"
    assert _cell(page, "succeeded / failed / cancelled") == "41 / 3 / 1"
    assert _cell(page, "429 answers") == "5"
    assert _cell(page, "retries") == "8"  # 5 after a 429, 3 after a 500
    assert _cell(page, "tokens (prompt + completion)") == "1,230 (410 + 820)"
    for title in ("Throughput and 429s over time", "Concurrency limit over time",
                  "Tokens over time", "Latency distribution", "Retries by cause"):  # fmt: skip
        assert f"<h2>{title}</h2>" in page
    slowest = page[page.index("slowest successful") :]
    assert slowest.index("ok-07") < slowest.index("ok-39") < slowest.index("ok-38")
    failed = page[page.index("Failed requests: 4") :]
    assert "bad-1" in failed
    assert "500, 500, 500" in failed
    assert "late" in failed
    assert "line-99" in failed
    # Self-contained and inert: no script, nothing fetched, the hostile id escaped.
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


def test_the_report_renders_in_a_browser(tmp_path: Path) -> None:
    out, page_path = tmp_path / "out.jsonl", tmp_path / "run.html"
    _run_file(out)
    assert run_cli("report", str(out), "-o", str(page_path)).returncode == 0
    with browser() as b:
        b.open(page_path.as_uri())
        plots = b.run(
            "return [...document.querySelectorAll('figure svg')].map(s => {"
            " const r = s.getBoundingClientRect();"
            " return [r.width, r.height, s.querySelectorAll('path, rect, text').length,"
            "         s.getBBox().width]; })"
        )
        fetched = b.run("return performance.getEntriesByType('resource').map(e => e.name)")
        title = b.run("return document.querySelector('h1').textContent")
        console = b.console()
    assert len(plots) == 5
    for width, height, marks, drawn in plots:
        assert width > 300
        assert height > 100
        assert marks > 10
        assert drawn > 100  # the drawing itself has a size, not only its box
    assert fetched == []
    assert console == []
    assert title == "paradigm-trio run: out.jsonl"


def test_batch_writes_an_html_report_with_timed_records(tmp_path: Path, mock_url: str) -> None:
    src, out, page = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "run.html"
    write_input(src, 60)
    proc = run_cli(
        "batch", str(src), "-o", str(out), "--concurrency", "8", "--report", str(page),
        env=env_for(mock_url),
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    recs = records(out)
    assert len(recs) == 60
    for rec in recs:
        assert rec["finished_at"] >= rec["started_at"] > 1.7e9  # type: ignore[operator]
        assert rec["endpoint"] == "/v1/chat/completions"
        assert rec["concurrency"] == 8 or isinstance(rec["concurrency"], int)
        for failure in rec["failures"]:  # type: ignore[attr-defined]
            assert set(failure) == {"at", "status", "cause", "wait"}
            assert 0 <= failure["at"] <= rec["elapsed"] + 0.01  # type: ignore[operator]
    failed_attempts = sum(len(rec["failures"]) for rec in recs)  # type: ignore[arg-type, misc]
    assert failed_attempts > 0  # the mock's faults
    text = page.read_text()
    assert "<h2>Latency distribution</h2>" in text
    assert f"Report: {page}" in proc.stderr


def test_ctrl_c_with_a_report_writes_the_report_of_what_was_done(
    tmp_path: Path, mock_url: str
) -> None:
    """After a Ctrl-C, ``batch`` writes the page of the run so far, marked as stopped, and
    exits 130; the resumed run's page covers both runs and is not marked."""
    src, out, page = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "run.html"
    write_input(src, 150)
    command = [*CLI, "batch", str(src), "-o", str(out), "--concurrency", "4", "--report",
               str(page)]  # fmt: skip
    with subprocess.Popen(command, env=env_for(mock_url), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as proc:  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 4000):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"Report: {page} (of the run so far)" in err
    first = len(records(out))
    assert 0 < first < 150
    text = page.read_text()
    assert "<title>paradigm-trio run: out.jsonl (stopped)</title>" in text
    assert 'class="stopped"' in text
    assert _cell(text, "records") == str(first)
    resumed = run_cli("batch", str(src), "-o", str(out), "--report", str(page),
                      env=env_for(mock_url))  # fmt: skip
    assert resumed.returncode in (0, 1), resumed.stderr
    text = page.read_text()
    assert _cell(text, "records") == "150"
    assert 'class="stopped"' not in text
    assert "<title>paradigm-trio run: out.jsonl</title>" in text


def test_an_html_report_without_matplotlib_is_refused_before_sending(tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 3)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(fake.parent), env.get("PYTHONPATH", "")])
    proc = run_cli("batch", str(src), "-o", str(out), "--mock", "--report", "r.html", env=env)
    assert proc.returncode == 2
    assert (
        "pip install matplotlib, or from a clone of paradigm-trio: pip install '.[report]'"
        in proc.stderr
    )
    assert not out.exists()


def test_the_marks_of_hedged_cached_and_deduplicated_answers_show_in_a_browser(
    tmp_path: Path,
) -> None:
    out, page_path = tmp_path / "out.jsonl", tmp_path / "run.html"
    rows = [_record(f"ok-{i}", elapsed=0.5 + i / 10, at=i) for i in range(8)]
    for row, mark in zip(rows[-3:], ("hedged", "cached", "deduplicated"), strict=True):
        row[mark] = True  # the three slowest, one mark each
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert run_cli("report", str(out), "-o", str(page_path)).returncode == 0
    with browser() as b:
        b.open(page_path.as_uri())
        summary = b.run(
            "return Object.fromEntries([...document.querySelector('table')"
            ".querySelectorAll('tr')].map(r => [...r.cells].map(c => c.innerText))"
            ".filter(c => c.length == 2))"
        )
        slowest = b.run(
            "const t = [...document.querySelectorAll('h2')].find(h => h.innerText"
            ".includes('slowest')).nextElementSibling;"
            "return [...t.querySelectorAll('tbody tr')].map(r => [r.cells[0].innerText,"
            " r.cells[r.cells.length - 1].innerText])"
        )
        console = b.console()
    assert summary["answered by a hedge (hedge=)"] == "1"
    assert summary["answered from the cache, not sent (cache=)"] == "1"
    assert summary["the answer of an identical line, not sent (dedupe=)"] == "1"
    assert slowest[:4] == [["ok-7", "deduplicated"], ["ok-6", "cached"], ["ok-5", "hedged"],
                           ["ok-4", ""]]  # fmt: skip
    assert console == []
