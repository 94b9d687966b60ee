"""``batch`` checks its paths and its input before sending anything (issue 13, items 6, 8).

Every refusal is exit code 2 and one line on stderr, before the embedded mock starts and
before anything is written.  Read-only paths are real: as root, the CLI runs without
``CAP_DAC_OVERRIDE`` (``setpriv``), so that file permissions apply to it as to anyone.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ..system import need
from .test_cli import CLI, records, run_cli, write_input


def assert_refused(proc: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("paradigm-trio batch: "), lines
    for phrase in phrases:
        assert phrase in lines[0]


def without_root_override() -> list[str]:
    """A command prefix under which file permissions bind, even for root."""
    if os.geteuid() != 0:
        return []
    setpriv = need("setpriv", "util-linux", "a test of file permissions run as root")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]


def run_unprivileged(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*without_root_override(), *CLI, *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def run_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=folder, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    write_input(path, 3)
    return path


@pytest.mark.parametrize("option", ["-o", "--report"])
def test_dash_is_refused(tmp_path: Path, src: Path, option: str) -> None:
    args = ["-o", str(tmp_path / "o.jsonl")] if option == "--report" else []
    proc = run_in(tmp_path, "batch", str(src), *args, option, "-", "--mock")
    assert_refused(proc, "-", "stdout")
    assert not (tmp_path / "-").exists()
    assert not (tmp_path / "o.jsonl").exists()


def test_a_missing_report_folder_is_refused_before_the_batch(tmp_path: Path, src: Path) -> None:
    out = tmp_path / "o.jsonl"
    proc = run_cli("batch", str(src), "-o", str(out), "--mock", "--report", "nope/r.json")
    assert_refused(proc, "nope/r.json", "does not exist")
    assert not out.exists()


def test_a_missing_output_folder_is_refused(tmp_path: Path, src: Path) -> None:
    proc = run_cli("batch", str(src), "-o", str(tmp_path / "nope" / "o.jsonl"), "--mock")
    assert_refused(proc, "does not exist")


@pytest.mark.parametrize("which", ["output", "report", "manifest"])
def test_a_directory_in_place_of_a_file_is_refused(tmp_path: Path, src: Path, which: str) -> None:
    out, report = tmp_path / "o.jsonl", tmp_path / "r.json"
    target = {"output": out, "report": report, "manifest": tmp_path / "o.jsonl.manifest.json"}
    target[which].mkdir()
    proc = run_cli("batch", str(src), "-o", str(out), "--report", str(report), "--mock")
    assert_refused(proc, str(target[which]), "is a directory")
    assert which == "output" or not out.exists()


@pytest.mark.parametrize("which", ["output", "report"])
def test_a_file_in_place_of_a_folder_is_refused(tmp_path: Path, src: Path, which: str) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder\n")
    out, report = tmp_path / "o.jsonl", tmp_path / "r.json"
    if which == "output":
        out = blocker / "o.jsonl"
    else:
        report = blocker / "r.json"
    proc = run_cli("batch", str(src), "-o", str(out), "--report", str(report), "--mock")
    assert_refused(proc, str(blocker), "not a folder")
    assert not (tmp_path / "o.jsonl").exists()


def test_the_report_must_not_be_the_input_or_the_output(tmp_path: Path, src: Path) -> None:
    out = tmp_path / "o.jsonl"
    for report in (src, out):
        proc = run_cli("batch", str(src), "-o", str(out), "--report", str(report), "--mock")
        assert_refused(proc, "--report")
    assert not out.exists()
    assert len(src.read_text().splitlines()) == 3


def test_a_read_only_folder_is_refused(tmp_path: Path, src: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        proc = run_unprivileged("batch", str(src), "-o", str(folder / "o.jsonl"), "--mock")
        report = run_unprivileged(
            "batch", str(src), "-o", str(tmp_path / "o.jsonl"), "--mock",
            "--report", str(folder / "r.json"),
        )  # fmt: skip
    finally:
        folder.chmod(0o755)
    assert_refused(proc, str(folder), "permission denied")
    assert_refused(report, str(folder), "permission denied")
    assert list(folder.iterdir()) == []
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("which", ["output", "report"])
def test_a_read_only_file_is_refused(tmp_path: Path, src: Path, which: str) -> None:
    out, report = tmp_path / "o.jsonl", tmp_path / "r.json"
    assert run_cli("batch", str(src), "-o", str(out), "--mock", "-q").returncode == 0
    target = out if which == "output" else report
    target.write_bytes(target.read_bytes() if target.exists() else b"{}\n")
    before = target.read_bytes()
    target.chmod(0o444)
    proc = run_unprivileged("batch", str(src), "-o", str(out), "--report", str(report), "--mock")
    assert_refused(proc, str(target), "permission denied")
    assert target.read_bytes() == before


# Item 8: what is read.


def test_a_directory_as_input_is_called_one(tmp_path: Path) -> None:
    proc = run_cli("batch", str(tmp_path), "-o", str(tmp_path / "o.jsonl"), "--mock")
    assert_refused(proc, "is a directory")
    assert "no such file" not in proc.stderr


def test_a_missing_input_is_no_such_file(tmp_path: Path) -> None:
    proc = run_cli("batch", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl"))
    assert_refused(proc, "no such file")


def garbage(n_lines: int) -> bytes:
    """Binary data cut into lines: NUL bytes and bytes that are not UTF-8 in each."""
    return b"".join(bytes([i % 7, 0, 0xFF, 0xFE, 0x80 + i % 64]) * 20 + b"\n"
                    for i in range(n_lines))  # fmt: skip


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(garbage(200), id="binary"),
        pytest.param(b'{"custom_id": "a", "messages": []}\n' + garbage(50), id="binary-after-one"),
        pytest.param(b"name,content\nalice,hello\nbob,hi\n", id="csv"),
        pytest.param(b'[{"custom_id": "a"}]\n{"custom_id": "b", "messages": []}\n', id="array"),
    ],
)
def test_a_file_that_is_not_jsonl_is_refused_once(tmp_path: Path, content: bytes) -> None:
    src, out = tmp_path / "in.bin", tmp_path / "o.jsonl"
    src.write_bytes(content)
    proc = run_cli("batch", str(src), "-o", str(out), "--mock")
    assert_refused(proc, str(src), "JSONL")
    assert not out.exists()
    assert not Path(f"{out}.manifest.json").exists()


def test_a_jsonl_file_with_a_few_bad_lines_still_runs(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "o.jsonl"
    write_input(src, 6)
    with src.open("ab") as f:
        f.write(garbage(2) + b"{not json\n")
    proc = run_cli("batch", str(src), "-o", str(out), "--mock", "-q")
    assert proc.returncode == 1, proc.stderr
    recs = records(out)
    assert len(recs) == 9
    bad = [r for r in recs if r["error"] is not None]
    assert len(bad) == 3
    assert all(r["error"]["code"] == "invalid_request" for r in bad)  # type: ignore[index]


def test_a_byte_order_mark_is_not_an_error(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "o.jsonl"
    write_input(src, 3)
    src.write_bytes(b"\xef\xbb\xbf" + src.read_bytes())
    proc = run_cli("batch", str(src), "-o", str(out), "--mock", "-q")
    assert proc.returncode == 0, proc.stderr
    assert sorted(str(r["custom_id"]) for r in records(out)) == ["req-0", "req-1", "req-2"]
    assert json.loads(Path(f"{out}.manifest.json").read_text())["input"] == str(src)
