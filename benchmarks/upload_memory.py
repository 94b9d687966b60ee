"""The client's memory while it uploads a large file: flat, whatever the file's size.

``python -m benchmarks.upload_memory [--size-mb 1024]`` makes a sparse file of that size
(no disk used), starts the mock server in a process of its own (its memory is not
counted), and uploads the file with ``client.files.upload`` over a real socket.  It
prints the client process's peak RSS (``VmHWM``) before and after the upload, and the
growth.  The file is read from disk in pieces of 1 MiB as it is sent, so the growth
stays a few MiB for 1 GiB; the unit test ``tests/unit/test_files.py`` checks the same
with ``tracemalloc`` on 256 MiB, and ``tests/integration/test_paradigm_mock.py`` uploads
96 MiB to the mock.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

import paradigm_trio as pt


def _peak_mib() -> float:
    text = Path("/proc/self/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else float("nan")


async def _upload(url: str, path: Path) -> pt.FileInfo:
    async with pt.Client(api_key="bench-key", base_url=url, timeouts=pt.Timeouts.none()) as client:
        return await client.files.upload(path, collection_type="private")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.upload_memory")
    parser.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (1024)")
    args = parser.parse_args(argv)
    size = args.size_mb * 1024 * 1024
    mock = subprocess.Popen(
        [sys.executable, "-m", "mock_server", "--port", "0", "--max-file-bytes", "0",
         "--file-processing-time", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert mock.stdout is not None
        match = re.search(r"(http://127\.0\.0\.1:\d+/api/v2)", mock.stdout.readline())
        assert match, "the mock did not start"
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "big.bin"
            with path.open("wb") as f:
                f.truncate(size)
            before = _peak_mib()
            start = time.monotonic()
            info = trio.run(_upload, match.group(1), path)
            elapsed = time.monotonic() - start
            after = _peak_mib()
    finally:
        mock.send_signal(signal.SIGINT)
        mock.wait(timeout=30)
    print(f"uploaded {args.size_mb} MiB as document {info.id} in {elapsed:.1f} s "
          f"({args.size_mb / elapsed:.0f} MiB/s)")  # fmt: skip
    print(f"client peak RSS: {before:.1f} MiB before, {after:.1f} MiB after: "
          f"+{after - before:.1f} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
