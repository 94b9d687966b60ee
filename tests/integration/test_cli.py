"""End-to-end tests of the ``paradigm-trio`` command, run as subprocesses against the mock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai.types.chat import ChatCompletion

from .mockprocess import mock_process

CLI = [sys.executable, "-m", "paradigm_trio"]


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


@pytest.fixture
def mock_url() -> Iterator[str]:
    """A mock server process with faults and latency; stopped (SIGINT) by the test."""
    with mock_process(
        "--seed", "3", "--latency", "fixed:0.05", "--fault", "server_error=0.1",
        "--fault", "reset=0.03", "--fault", "rate_limit=0.05",
    ) as url:  # fmt: skip
        yield url


def env_for(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PARADIGM_BASE_URL"] = url
    env["PARADIGM_API_KEY"] = "sk-test-not-a-real-key"
    return env


def write_input(path: Path, n: int, *, extra_lines: tuple[str, ...] = ()) -> None:
    with path.open("w") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "custom_id": f"req-{i}",
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": {
                            "model": "alfred-4.2",
                            "max_tokens": 16,
                            "messages": [{"role": "user", "content": f"Hello {i}"}],
                        },
                    }
                )
                + "\n"
            )
        for line in extra_lines:
            f.write(line + "\n")


def kill_9_after(args: list[str], env: dict[str, str], out: Path, size: int) -> None:
    """Run the command and ``kill -9`` it once ``out`` holds ``size`` bytes (or after 30 s)."""
    proc = subprocess.Popen(
        [*CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < size):
        time.sleep(0.02)
    proc.kill()
    proc.wait()


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_output_format(recs: list[dict[str, object]]) -> None:
    for rec in recs:
        assert set(rec) >= {"id", "custom_id", "response", "error", "attempts", "elapsed"}
        if rec["error"] is None:
            response = rec["response"]
            assert isinstance(response, dict)
            assert response["status_code"] == 200
            ChatCompletion.model_validate(response["body"])


def test_batch_with_faults_gives_one_record_per_input(tmp_path: Path, mock_url: str) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 60, extra_lines=("{not json", json.dumps({"messages": []})))
    proc = run_cli(
        "batch",
        str(src),
        "-o",
        str(out),
        "--concurrency",
        "8",
        "--report",
        str(tmp_path / "report.json"),
        env=env_for(mock_url),
    )
    recs = records(out)
    ids = [r["custom_id"] for r in recs]
    assert len(ids) == len(set(ids)) == 62
    assert {f"req-{i}" for i in range(60)} <= set(ids)
    check_output_format(recs)
    invalid = [r for r in recs if r["error"] and r["error"]["code"] == "invalid_request"]  # type: ignore[index]
    assert len(invalid) == 2
    assert "line 61" in proc.stderr
    assert "line 62" in proc.stderr
    assert proc.returncode == 1  # the invalid lines are failures
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["invalid_lines"] == 2
    assert report["succeeded"] == sum(1 for r in recs if r["error"] is None)
    assert "sk-test-not-a-real-key" not in proc.stderr + proc.stdout + out.read_text()


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path: Path, mock_url: str) -> None:
    src = tmp_path / "in.jsonl"
    write_input(src, 150)
    env = env_for(mock_url)
    full = tmp_path / "full.jsonl"
    assert run_cli(
        "batch", str(src), "-o", str(full), "--concurrency", "4", "-q", env=env
    ).returncode in (0, 1)
    out = tmp_path / "out.jsonl"
    kill_9_after(["batch", str(src), "-o", str(out), "--concurrency", "4", "-q"], env, out, 4000)
    partial = len(out.read_text().splitlines())
    assert 0 < partial < 150
    resumed = run_cli("batch", str(src), "-o", str(out), "--concurrency", "8", env=env)
    assert "Resuming" in resumed.stderr
    got, want = records(out), records(full)
    assert sorted(r["custom_id"] for r in got) == sorted(r["custom_id"] for r in want)  # type: ignore[type-var]
    assert len(got) == 150
    check_output_format(got)
    # the mock is deterministic per custom_id: the same requests succeed in both runs
    assert {r["custom_id"] for r in got if r["error"] is None} == {
        r["custom_id"] for r in want if r["error"] is None
    }


def test_sigint_leaves_a_consistent_file_and_resumes(tmp_path: Path, mock_url: str) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 150)
    env = env_for(mock_url)
    proc = subprocess.Popen(
        [*CLI, "batch", str(src), "-o", str(out), "--concurrency", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 4000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Rerun the same command to resume" in err
    recs = records(out)  # every line is whole JSON
    assert 0 < len(recs) < 150
    assert run_cli("batch", str(src), "-o", str(out), env=env).returncode in (0, 1)
    assert sorted(r["custom_id"] for r in records(out)) == sorted(f"req-{i}" for i in range(150))  # type: ignore[type-var]


def test_retry_failed_reruns_only_the_failures(tmp_path: Path, mock_url: str) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 40)
    env = env_for(mock_url)
    run_cli("batch", str(src), "-o", str(out), "--max-attempts", "1", "-q", env=env)
    before = records(out)
    failed = {r["custom_id"] for r in before if r["error"] is not None}
    assert failed  # 10 % 5xx + resets + 429s with one attempt each
    proc = run_cli("batch", str(src), "-o", str(out), "--retry-failed", env=env)
    after = records(out)
    assert len(after) == 40
    assert sorted(r["custom_id"] for r in after) == sorted(f"req-{i}" for i in range(40))  # type: ignore[type-var]
    assert f"{len(failed)} failed request(s) will run again" in proc.stderr


def test_bad_usage_and_inputs_exit_2(tmp_path: Path) -> None:
    assert run_cli("batch", str(tmp_path / "missing.jsonl"), "-o", "x.jsonl").returncode == 2
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 3, extra_lines=("[1, 2]",))
    strict = run_cli("batch", str(src), "-o", str(out), "--strict", "--mock")
    assert strict.returncode == 2
    assert "line 4" in strict.stderr
    assert not out.exists() or not out.read_text()
    assert run_cli("batch", str(src), "-o", str(out), "--mock", "-q").returncode == 1
    other = tmp_path / "other.jsonl"
    write_input(other, 5)
    refused = run_cli("batch", str(other), "-o", str(out), "--mock")
    assert refused.returncode == 2
    assert "different input" in refused.stderr
    no_key = run_cli(
        "batch",
        str(other),
        "-o",
        str(tmp_path / "o2.jsonl"),
        env={k: v for k, v in os.environ.items() if k != "PARADIGM_API_KEY"},
    )
    assert no_key.returncode == 2
    assert "PARADIGM_API_KEY" in no_key.stderr
    assert run_cli("batch", str(src)).returncode == 2  # -o is required
    assert run_cli("batch", str(src), "-o", str(out), "--concurrency", "0").returncode == 2


def test_speed_test_mock() -> None:
    proc = run_cli("speed-test", "--mock", "-n", "5", "--no-replies")
    assert proc.returncode == 0, proc.stderr
    assert "Improvement factor" in proc.stdout
    assert "Ideal factor" in proc.stdout


def test_help_reads_well() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("batch", "speed-test", "mock"):
        assert command in proc.stdout


def test_resume_with_another_model_goes_on_and_says_so(tmp_path: Path) -> None:
    # Only the input's hash is compared (docs/cli.md, "The manifest"): settings may change.
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 3)
    assert run_cli("batch", str(src), "-o", str(out), "--mock", "-q").returncode == 0
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:2]) + "\n")  # one request left to do
    resumed = run_cli("batch", str(src), "-o", str(out), "--mock", "--model", "other-model")
    assert resumed.returncode == 0, resumed.stderr
    assert "was last run with --model" in resumed.stderr
    assert "'other-model'" in resumed.stderr
    assert len(records(out)) == 3
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert manifest["settings"]["model"] == "other-model"


def test_batch_help_tells_about_checks_lock_and_pipes() -> None:
    proc = run_cli("batch", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for phrase in ("--wait-for-lock", "--lock-timeout", "OUT.jsonl.lock", "which process holds",
                   "-o - is refused", "not a JSON object", "| head -1"):  # fmt: skip
        assert phrase in text, phrase
    assert "| head -1" in " ".join(run_cli("speed-test", "--help").stdout.split())


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        pytest.param(
            "--base-url", "https://a..b/api/v2",
            "base URL 'https://a..b/api/v2': the host 'a..b' is not a valid host name: it "
            "has an empty label (two dots in a row, or a dot at the start)",
            id="base-url",
        ),
        pytest.param(
            "--proxy", "http://alice:s3cret@proxy..corp.example:3128",
            "--proxy: the proxy's host 'proxy..corp.example' is not a valid host name: it "
            "has an empty label",
            id="proxy",
        ),
    ],
)  # fmt: skip
def test_a_host_that_cannot_be_looked_up_is_one_clear_line(
    tmp_path: Path, option: str, value: str, said: str
) -> None:
    """Before, trio's look-up raised a bare ``UnicodeError`` for each request."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 3)
    env = {**os.environ, "PARADIGM_API_KEY": "sk-cli-host-test-0123456789"}
    for command in (["batch", str(src), "-o", str(out)], ["speed-test", "-n", "1"]):
        proc = run_cli(*command, option, value, env=env)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"paradigm-trio {command[0]}: {said}"), proc.stderr
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        assert "s3cret" not in proc.stderr
        assert "sk-cli-host-test" not in proc.stderr + proc.stdout
    assert not out.exists()  # refused before any file was created
    doctor = run_cli("doctor", option, value, env=env)
    assert doctor.returncode == 1
    library = said.replace("--proxy:", "proxy=:")  # doctor prints the library's check
    assert doctor.stdout.startswith(f"FAILED  configuration  {library}"), doctor.stdout
    assert len(doctor.stdout.splitlines()) == 1, doctor.stdout
    assert doctor.stderr == ""
