"""A real browser for the tests: Debian's headless Chromium, driven through chromedriver's
WebDriver HTTP API (with httpx2: no Selenium, no browser download).  ``.ci/run`` installs
``chromium`` and ``chromium-driver`` when they are missing; elsewhere a test that opens a
browser is skipped without them (:func:`tests.system.need`)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2

from ..system import need

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,900",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Browser:
    """One WebDriver session."""

    def __init__(self, http: httpx2.Client, session: str) -> None:
        self._http = http
        self._session = session

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, f"/session/{self._session}{path}", json=body)
        data = response.json()
        assert response.status_code == 200, data
        return data["value"]

    def open(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def run(self, script: str) -> Any:
        """The value of a JavaScript function body run in the page."""
        return self._call("POST", "/execute/sync", {"script": script, "args": []})

    def console(self) -> list[dict[str, Any]]:
        """The page's console messages since the last call (level, message)."""
        entries: list[dict[str, Any]] = self._call("POST", "/se/log", {"type": "browser"})
        return entries

    def screenshot(self) -> bytes:
        import base64

        return base64.b64decode(self._call("GET", "/screenshot"))


@contextmanager
def browser() -> Iterator[Browser]:
    """A headless Chromium with a fresh profile; stopped on exit."""
    what = "a test in a real browser"
    chromium = need("chromium", "chromium", what)
    driver = need("chromedriver", "chromium-driver", what)
    port = _free_port()
    process = subprocess.Popen(
        [driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    profile = tempfile.mkdtemp(prefix="pt-chromium-")
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx2.Client(base_url=url, timeout=60, trust_env=False) as http:
            _wait_ready(http)
            options = {"binary": chromium, "args": [*FLAGS, f"--user-data-dir={profile}"]}
            capabilities = {
                "browserName": "chrome",
                "goog:chromeOptions": options,
                "goog:loggingPrefs": {"browser": "ALL"},
            }
            response = http.post("/session", json={"capabilities": {"alwaysMatch": capabilities}})
            assert response.status_code == 200, response.text
            session = response.json()["value"]["sessionId"]
            try:
                yield Browser(http, session)
            finally:
                http.delete(f"/session/{session}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _wait_ready(http: httpx2.Client) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if http.get("/status").json()["value"]["ready"]:
                return
        except httpx2.TransportError:
            pass
        assert time.monotonic() < deadline, "chromedriver did not start within 30 s"
        time.sleep(0.1)
