"""The command on hostile files: deep nesting, NaN and Infinity, lone surrogates, URL
passwords holding an ``@``, hand-edited records.  Each is a line's own problem (or a
masked value), never a traceback, never a file that is not strict JSON or half written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import paradigm_trio as pt
from paradigm_trio.cli._batchfile import (
    InputError,
    encode_record,
    read_done,
    read_input,
    result_line,
    scan_input,
)
from paradigm_trio.cli._lock import OutputLock
from paradigm_trio.cli._report import RunData, write_html
from paradigm_trio.cli._shard import Shard, shard_of
from paradigm_trio.cli._text import dumps, safe, write_atomic

DEEP = "[" * 5000 + "]" * 5000
GOOD = '{"custom_id": "ok", "messages": [{"role": "user", "content": "hi"}]}'


def test_a_deeply_nested_input_line_is_that_lines_invalid_record(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(GOOD + "\n" + '{"custom_id": "deep", "messages": ' + DEEP + "}\n" + DEEP + "\n")
    items = list(read_input(src))
    assert [i.request is not None for i in items] == [True, False, False]
    assert all("nested deeper" in (i.problem or "") for i in items[1:])
    assert scan_input(src)[1] == 3


def test_a_deeply_nested_first_line_refuses_the_file_without_a_traceback(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(DEEP + "\n" + GOOD + "\n")
    with pytest.raises(InputError, match="nested deeper"):
        scan_input(src)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_non_finite_number_in_an_input_line_is_an_invalid_line(
    tmp_path: Path, token: str
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(GOOD + "\n" + GOOD.replace('"ok"', '"x"')[:-1] + f', "temperature": {token}}}\n')
    items = list(read_input(src))
    assert items[1].request is None  # the request refuses it, under the line's own id
    assert items[1].custom_id == "x"
    assert "temperature" in (items[1].problem or "")


def test_a_lone_surrogate_custom_id_has_a_shard() -> None:
    lone = "id-\ud800"
    assert 0 <= shard_of(lone, 4) < 4
    assert shard_of("plain", 4) == shard_of("plain", 4)
    assert Shard(0, 1).owns(lone)


def test_the_lock_file_masks_a_url_password_holding_an_at_sign(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    command = ["batch", "in.jsonl", "-o", str(out), "--base-url",
               "http://alice:p@ss-Secr3t@host/api/v2"]  # fmt: skip
    with OutputLock(out, command).acquire(wait=False, timeout=0):
        text = (tmp_path / "out.jsonl.lock").read_text()
        holder = OutputLock(out, command).holder()
    for shown in (text, holder):
        assert "Secr3t" not in shown
        assert "alice:***@host" in shown


def test_records_are_strict_json_with_surrogates_escaped() -> None:
    line = encode_record({"custom_id": "a\udc80", "error": {"message": "\ud800 bad"}})
    assert json.loads(line)["custom_id"] == "a\udc80"
    with pytest.raises(ValueError, match="Out of range float"):
        encode_record({"custom_id": "x", "elapsed": float("nan")})
    # A result that cannot be recorded strictly still gets its line, an error record.
    completion = pt.ChatCompletion.from_json(
        {"choices": [{"message": {"content": "hi"}}], "extra": [float("inf")]}
    )
    record = json.loads(result_line("c", completion, None, 1, 0.1))
    assert record["error"]["code"] == "record_error"


def test_text_written_is_safe_and_atomic(tmp_path: Path) -> None:
    assert safe("a\ud800b") == "a\\ud800b"
    assert json.loads(dumps({"k": "\udfff"})) == {"k": "\udfff"}
    page = tmp_path / "page.html"
    page.write_text("old")
    write_atomic(page, "new \ud800")
    assert page.read_text() == "new \\ud800"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]  # no temporary file left


def _record(custom_id: str, **fields: object) -> dict[str, object]:
    record: dict[str, object] = {
        "id": "batch_req_1", "custom_id": custom_id, "response": None,
        "error": {"code": "bad", "message": "boom"}, "attempts": 1, "elapsed": 0.5,
        "started_at": 1000.0, "finished_at": 1000.5, "concurrency": 4,
        "failures": [{"at": 0.1, "status": 429, "cause": "rate_limited", "wait": 0.2}],
    }  # fmt: skip
    record.update(fields)
    return record


def test_the_report_of_hostile_records_is_written_and_names_the_bad_lines(
    tmp_path: Path,
) -> None:
    records = tmp_path / "out.jsonl"
    lines = [
        encode_record(_record("lone-\ud800", error={"code": "x", "message": "\ud800 said"})),
        encode_record(_record("math", failures=[{"at": 0, "cause": "$\\frac$", "wait": 1}])),
        encode_record(_record("five", failures=5)),  # hand-edited: not a list
        b'{"custom_id": "nan", "elapsed": NaN, "error": null}\n',
        b'{"custom_id": "inf", "elapsed": Infinity, "error": null}\n',
        ('{"custom_id": "deep", "x": ' + DEEP + "}\n").encode(),
        encode_record(_record("ok", error=None, response={"body": {"usage": {}}})),
        b'{"custom_id": "half',
    ]
    records.write_bytes(b"".join(lines))
    page = tmp_path / "run.html"
    data = write_html(records, page)
    assert data.unreadable == [3, 4, 5, 6, 8]
    text = page.read_text(encoding="utf-8")
    assert "line 3, 4, 5, 6, 8" in text
    assert "lone-\\ud800" in text
    assert data.records == 3
    assert isinstance(RunData.read(records).unreadable_count, int)


def test_read_done_survives_deep_and_non_finite_records(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    good = encode_record(_record("a", error=None))
    out.write_bytes(good + b'{"custom_id": "b", "x": NaN}\n' + ("[" * 5000 + "\n").encode())
    done, _ = read_done(out, keep_failed=True)
    assert done == {"a"}


def test_log_lines_with_lone_surrogates_can_be_written() -> None:
    import logging

    from paradigm_trio.cli._logging import JSONFormatter

    record = logging.LogRecord("paradigm_trio", logging.WARNING, "x", 1, "id \ud800", (), None)
    record.custom_id = "c\udfff"
    line = JSONFormatter().format(record)
    line.encode("utf-8")  # a stream or a file can take it
    assert json.loads(line)["custom_id"] == "c\udfff"


def test_the_failures_summary_skips_a_deep_or_non_finite_line(tmp_path: Path) -> None:
    from paradigm_trio.cli._causes import failure_groups

    out = tmp_path / "out.jsonl"
    bad = encode_record(_record("a", error={"code": "boom", "message": "\ud800"}))
    out.write_bytes(bad + ("[" * 5000 + "]" * 5000 + "\n").encode() + b'{"error": NaN}\n')
    assert [(g["code"], g["count"]) for g in failure_groups(out)] == [("boom", 1)]
