"""``batch``'s live view, seen through a pseudo-terminal (as a person at a terminal would)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

from .test_cli import CLI, env_for, mock_url, write_input

__all__ = ["mock_url"]  # (the fixture, used by name)


def run_in_terminal(*args: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run the command with a 120x40 pseudo-terminal as stdin, stdout and stderr; its exit
    code and everything it wrote to the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**env, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([*CLI, *args], stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    return proc.returncode, b"".join(chunks).decode("utf-8", errors="replace")


def test_a_terminal_gets_a_live_view(tmp_path: Path, mock_url: str) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 300)
    code, screen = run_in_terminal(
        "batch", str(src), "-o", str(out), "--concurrency", "16", env=env_for(mock_url)
    )
    assert code in (0, 1), screen
    assert len(out.read_text().splitlines()) == 300
    assert "━" in screen  # rich's bar
    frames = screen.count("req/min")
    assert frames >= 2, screen  # redrawn in place
    assert "\x1b[?25l" in screen  # the cursor hidden while the view is live...
    assert screen.rindex("\x1b[?25h") > screen.rindex("\x1b[?25l")  # ...and shown again
    text = _text(screen)
    last = text[text.rindex("300/300") :]
    assert "100%" in last
    assert re.search(r"in flight \d+", last)
    assert re.search(r"concurrency limit \d+", last)
    rate_limited = int(re.findall(r"429s (\d+)", text)[-1])
    assert rate_limited > 0  # the mock answers 5 % of requests with 429
    retries = re.findall(r"retries (\d+) \(([^)]*)\)", text)[-1]
    assert int(retries[0]) > 0
    assert "429" in retries[1]
    assert "Done: " in screen  # the summary after the view


def _text(screen: str) -> str:
    """The terminal's output without its control sequences (colours, cursor moves)."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)


def test_verbose_on_a_terminal_prints_lines_not_a_view(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, 40)
    code, screen = run_in_terminal(
        "batch", str(src), "-o", str(out), "--mock", "-v", env=dict(os.environ)
    )
    assert code == 0, screen
    assert "━" not in screen
    assert "INFO chat batch finished: 40 done" in screen
    assert re.search(r"40/40 100% \| ok 40 failed 0", screen)
    assert all(json.loads(line)["error"] is None for line in out.read_text().splitlines())
