"""A closed stdout or stderr does not change what a command does (issue 13, item 7).

``paradigm-trio batch ... 2>&1 | head -1`` and ``paradigm-trio speed-test | head -1``:
the reader goes away early, so the command's next write to the pipe fails (EPIPE).  The
tests close real pipes, either after the first line (like ``head -1``) or before the
command wrote anything.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .test_cli import CLI, records, write_input


@pytest.mark.parametrize("read_first_line", [True, False], ids=["head-1", "closed-at-once"])
@pytest.mark.parametrize("invalid_line", [False, True], ids=["all-valid", "one-invalid"])
def test_batch_outcome_does_not_depend_on_its_stderr(
    tmp_path: Path, read_first_line: bool, invalid_line: bool
) -> None:
    src, out, report = tmp_path / "in.jsonl", tmp_path / "o.jsonl", tmp_path / "r.json"
    write_input(src, 40, extra_lines=("{not json",) if invalid_line else ())
    proc = subprocess.Popen(
        [*CLI, "batch", str(src), "-o", str(out), "--mock", "--concurrency", "4",
         "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    if read_first_line:
        assert proc.stdout.readline()
    proc.stdout.close()
    code = proc.wait(timeout=120)
    assert code == (1 if invalid_line else 0)
    summary = json.loads(report.read_text())
    assert summary["succeeded"] == 40
    assert summary["invalid_lines"] == int(invalid_line)
    assert len(records(out)) == 40 + invalid_line


@pytest.mark.parametrize("buffered", [False, True], ids=["head-1", "closed-at-once"])
def test_speed_test_survives_a_closed_stdout(tmp_path: Path, buffered: bool) -> None:
    env = dict(os.environ)
    if buffered:  # stdout to a pipe is block-buffered: the failing write comes at exit
        env.pop("PYTHONUNBUFFERED", None)
    else:
        env["PYTHONUNBUFFERED"] = "1"
    err_path = tmp_path / "stderr"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            [*CLI, "speed-test", "--mock", "-n", "3"], stdout=subprocess.PIPE, stderr=err, env=env
        )
        assert proc.stdout is not None
        if not buffered:
            assert proc.stdout.readline().startswith(b"Embedded mock server")
        proc.stdout.close()
        code = proc.wait(timeout=120)
    stderr = err_path.read_text()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr
