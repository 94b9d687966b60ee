"""Starting and stopping: in-process (fast, clean) and as a process (signals, exit codes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
import trio

import mock_server as ms

from .. import pace
from ..pace import slack
from ._helpers import chat_body, keyed

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
LISTENING = "Mock Paradigm API listening on "


async def test_in_process_start_and_stop_are_fast() -> None:
    start = trio.current_time()
    async with ms.serve() as server:
        started = trio.current_time()
        async with httpx2.AsyncClient() as client:
            response = await client.get(server.url + "/models")
        assert response.status_code == 200
        now = await pace.round_trip(server.url + "/models")
        stopping = trio.current_time()
    stopped = trio.current_time()
    assert started - start < slack(1.0, now)
    assert stopped - stopping < slack(0.1, now)
    async with httpx2.AsyncClient() as client:
        with pytest.raises(httpx2.ConnectError):
            await client.get(server.url + "/models")


async def test_two_servers_get_distinct_ports() -> None:
    async with ms.serve() as first, ms.serve() as second:
        assert first.root_url != second.root_url


async def test_stopping_with_requests_in_flight_is_prompt() -> None:
    errors: list[BaseException] = []
    async with httpx2.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
        async with ms.serve(ms.MockConfig(latency=ms.Latency.fixed(30))) as server:
            server.script("h", ["hang"])

            async def request(key: str) -> None:
                try:
                    await client.post(
                        server.url + "/chat/completions",
                        json=chat_body(key),
                        headers=keyed(key),
                    )
                except httpx2.TransportError as exc:
                    errors.append(exc)

            nursery.start_soon(request, "h")
            nursery.start_soon(request, "slow")
            await _wait_for_keys(server, {"h", "slow"})
            now = await pace.round_trip(server.url + "/models")
            stopping = trio.current_time()
        stopped = trio.current_time() - stopping
    assert stopped < slack(0.5, now)
    assert len(errors) == 2  # both clients saw the connection go away
    records = server.requests()
    assert all(r.finish is not None and not r.disconnected for r in records)
    assert server.stats().in_flight == 0


async def _wait_for_keys(server: ms.MockServer, keys: set[str]) -> None:
    with trio.fail_after(5):
        while not keys <= {r.key for r in server.requests()}:
            await trio.sleep(0.005)


async def test_serving_an_existing_app() -> None:
    app = ms.create_app(ms.MockConfig(seed=9))
    state = ms.get_state(app)
    async with ms.serve(app=app) as server, httpx2.AsyncClient(base_url=server.url) as client:
        await client.post("/chat/completions", json=chat_body())
    assert state.stats().total == 1
    assert state.config.seed == 9


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mock_server", *args]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("MOCK_API_KEY", None)
    env.update(extra)
    return env


async def _start(*args: str, **env: str) -> tuple[trio.Process, str]:
    process = await trio.lowlevel.open_process(
        _command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(**env),
        cwd=ROOT,
    )
    assert process.stdout is not None
    buffer = b""
    try:
        with trio.fail_after(20):
            while b"\n" not in buffer:
                chunk = await process.stdout.receive_some(4096)
                if not chunk:
                    break
                buffer += chunk
    except BaseException:
        process.kill()
        await process.wait()
        raise
    line = buffer.decode().splitlines()[0] if buffer else ""
    return process, line


async def _stop(process: trio.Process, signum: int) -> int:
    process.send_signal(signum)
    with trio.fail_after(10):
        return await process.wait()


@pytest.mark.slow
async def test_process_mode_serves_and_exits_cleanly_on_sigint() -> None:
    process, line = await _start("--port", "0", "--seed", "5", "--latency", "fixed:0.01")
    try:
        assert line.startswith(LISTENING + "http://127.0.0.1:")
        url = line.removeprefix(LISTENING)
        assert url.endswith("/api/v2")
        async with httpx2.AsyncClient(base_url=url) as client:
            response = await client.post("/chat/completions", json=chat_body())
            stats = (await client.get(url.removesuffix("/api/v2") + "/_mock/stats")).json()
        assert response.status_code == 200
        assert stats["total"] == 1
    finally:
        code = await _stop(process, signal.SIGINT)
    assert code == 0
    assert process.stdout is not None
    rest = b""
    while chunk := await process.stdout.receive_some(4096):
        rest += chunk
    assert rest == b""  # exactly one line on stdout


@pytest.mark.slow
async def test_process_mode_config_file_flags_env_and_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "mock.toml"
    config.write_text(
        'seed = 1\nmodels = ["from-file"]\napi_key = "file-key"\n[faults]\nserver_error = 1.0\n'
    )
    process, line = await _start(
        "--port",
        "0",
        "--config",
        str(config),
        "--fault",
        "server_error=0",
        "--models",
        "a,b",
        MOCK_API_KEY="env-key",
    )
    try:
        url = line.removeprefix(LISTENING)
        async with httpx2.AsyncClient(base_url=url) as client:
            auth = {"Authorization": "Bearer env-key"}
            ok = await client.post("/chat/completions", json=chat_body(model="b"), headers=auth)
            unknown = await client.post(
                "/chat/completions", json=chat_body(model="from-file"), headers=auth
            )
            file_key = {"Authorization": "Bearer file-key"}
            denied = await client.post(
                "/chat/completions", json=chat_body(model="a"), headers=file_key
            )
    finally:
        code = await _stop(process, signal.SIGTERM)
    assert code == 0
    assert ok.status_code == 200  # --fault overrides the file's server_error = 1.0
    assert unknown.status_code == 400  # --models overrides the file's list
    assert denied.status_code == 401  # $MOCK_API_KEY overrides the file's api_key


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fault", "explode=0.1"], "--fault"),
        (["--fault", "hang=2"], "faults.hang"),
        (["--latency", "sometimes"], "latency"),
        (["--rpm", "0"], "rpm"),
        (["--port", "70000"], "--port"),
        (["--bogus-flag"], "unrecognized arguments"),
        (["--config", "/nonexistent/mock.toml"], "No such file"),
    ],
)
async def test_process_mode_rejects_bad_config_with_exit_2(args: list[str], message: str) -> None:
    result = await trio.run_process(
        _command(*args), capture_stdout=True, capture_stderr=True, check=False, env=_env(), cwd=ROOT
    )
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert result.stdout == b""


def test_main_in_process_reports_bad_json_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"seed": 1, "faults": {"reset": 0.7, "close": 0.7}}))
    assert ms.main(["--config", str(bad)]) == 2
    assert "faults" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert ms.main(["--config", str(broken)]) == 2
    assert "cannot parse" in capsys.readouterr().err
