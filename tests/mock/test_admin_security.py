"""The admin routes (/_mock/*) against browsers, DNS rebinding and other hosts."""

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
from mock_server import _server

from ._helpers import assert_error_envelope, chat_body

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "admin-token-for-tests-7f3a"
HANG_ALL = {"faults": {"hang": 1.0}}


def _admin(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_non_json_body_gets_415_and_changes_nothing() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.root_url) as client:
        plain = await client.post(
            "/_mock/config", content=json.dumps(HANG_ALL), headers={"Content-Type": "text/plain"}
        )
        form = await client.post("/_mock/config", data={"faults": "x"})
        untyped = await client.post("/_mock/script", content=b'{"key": "k", "outcomes": ["503"]}')
        typed_empty = await client.post("/_mock/reset", headers={"Content-Type": "text/plain"})
        json_ok = await client.post("/_mock/config", json={"seed": 3})
        charset_ok = await client.post(
            "/_mock/config",
            content=b'{"seed": 4}',
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        bodiless_reset = await client.post("/_mock/reset")
        chat = await client.post("/api/v2/chat/completions", json=chat_body(), headers={})
    for response in (plain, form, untyped, typed_empty):
        error = assert_error_envelope(response, 415, "unsupported_media_type")
        assert "application/json" in error["message"]
    assert server.config.faults.hang == 0.0
    assert (json_ok.status_code, charset_ok.status_code) == (200, 200)
    assert server.config.seed == 4
    assert bodiless_reset.status_code == 200
    assert chat.status_code == 200


async def test_browser_requests_are_refused_with_403() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.root_url) as client:
        cross_origin = await client.post(
            "/_mock/config", json=HANG_ALL, headers={"Origin": "https://evil.example"}
        )
        null_origin = await client.post("/_mock/reset", headers={"Origin": "null"})
        read = await client.get("/_mock/requests", headers={"Origin": "https://evil.example"})
        cross_site = await client.get("/_mock/stats", headers={"Sec-Fetch-Site": "cross-site"})
        typed_in_address_bar = await client.get(
            "/_mock/stats", headers={"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}
        )
    for response in (cross_origin, null_origin, read, cross_site):
        error = assert_error_envelope(response, 403, "browser_request_refused")
        assert "browser" in error["message"]
        assert "access-control-allow-origin" not in response.headers
    assert server.config.faults.hang == 0.0
    assert typed_in_address_bar.status_code == 200


async def test_dns_rebinding_host_is_refused_without_a_token() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.root_url) as client:
        port = server.root_url.rsplit(":", 1)[1]
        rebound = await client.get("/_mock/requests", headers={"Host": f"evil.example:{port}"})
        rebound_post = await client.post(
            "/_mock/config", json=HANG_ALL, headers={"Host": "evil.example"}
        )
        allowed = [
            (await client.get("/_mock/stats", headers={"Host": host})).status_code
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "[::1]", "app.localhost")
        ]
    for response in (rebound, rebound_post):
        error = assert_error_envelope(response, 403, "host_not_allowed")
        assert "admin_token" in error["message"]
    assert server.config.faults.hang == 0.0
    assert allowed == [200, 200, 200, 200]


async def test_a_configured_admin_token_is_required_on_every_admin_route() -> None:
    config = ms.MockConfig(api_key="sk-api-key-1", admin_token=TOKEN)
    async with ms.serve(config) as server, httpx2.AsyncClient(base_url=server.root_url) as client:
        denied = {
            path: await client.request(method, path, json=body)
            for method, path, body in (
                ("GET", "/_mock/stats", None),
                ("GET", "/_mock/requests", None),
                ("GET", "/_mock/config", None),
                ("POST", "/_mock/config", HANG_ALL),
                ("POST", "/_mock/reset", {}),
                ("POST", "/_mock/script", {"key": "k", "outcomes": ["hang"]}),
            )
        }
        wrong = await client.post("/_mock/config", json=HANG_ALL, headers=_admin("nope"))
        api_key = await client.post("/_mock/config", json=HANG_ALL, headers=_admin("sk-api-key-1"))
        bearer = await client.post("/_mock/config", json={"seed": 5}, headers=_admin())
        dedicated = await client.get("/_mock/stats", headers={"X-Mock-Admin-Token": TOKEN})
        rebound_with_token = await client.get(
            "/_mock/stats", headers={**_admin(), "Host": "mock.internal"}
        )
        chat = await client.post(
            "/api/v2/chat/completions", json=chat_body(), headers=_admin("sk-api-key-1")
        )
        metrics = await client.get("/metrics")
    for response in (*denied.values(), wrong, api_key):
        error = assert_error_envelope(response, 401, "invalid_admin_token")
        assert "X-Mock-Admin-Token" in error["message"]
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in response.text
    assert server.config.faults.hang == 0.0
    assert server.config.seed == 5
    assert (bearer.status_code, dedicated.status_code) == (200, 200)
    assert rebound_with_token.status_code == 200
    assert bearer.json()["admin_token"] == "***"
    assert chat.status_code == 200  # the API key, not the admin token, guards the API
    assert metrics.status_code == 200


def test_admin_token_is_validated_and_masked() -> None:
    config = ms.MockConfig(admin_token="tok-123456")
    assert "tok-123456" not in repr(config)
    assert "admin_token='***'" in repr(config)
    assert config.to_dict()["admin_token"] == "***"
    assert ms.MockConfig().to_dict()["admin_token"] is None
    for bad in ("", 5, "has space"):
        with pytest.raises(ValueError, match=r"^admin_token"):
            ms.MockConfig(admin_token=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.10", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert _server.is_loopback(host) is loopback


@pytest.fixture
def pretend_beyond_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests bind 127.0.0.1 only: make the server treat that address as a public one."""
    monkeypatch.setattr(_server, "is_loopback", lambda host: False)


@pytest.mark.usefixtures("pretend_beyond_loopback")
async def test_beyond_loopback_a_token_is_generated_and_always_required() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.root_url) as client:
        token = server.admin_token
        assert token is not None
        assert len(token) >= 32
        assert server.config.admin_token == token
        open_door = await client.get("/_mock/stats")
        with_token = await client.get("/_mock/stats", headers=_admin(token))
        drop = await client.post("/_mock/config", json={"admin_token": None}, headers=_admin(token))
        with pytest.raises(ValueError, match=r"^admin_token: .*loopback"):
            server.configure(admin_token=None)
        server.configure(admin_token="a-new-token-1")
        rotated = await client.get("/_mock/stats", headers=_admin("a-new-token-1"))
    assert_error_envelope(open_door, 401, "invalid_admin_token")
    assert with_token.status_code == 200
    assert "loopback" in assert_error_envelope(drop, 400, "invalid_config")["message"]
    assert rotated.status_code == 200
    async with ms.serve(ms.MockConfig(admin_token=TOKEN)) as given:
        assert given.admin_token == TOKEN


async def test_on_loopback_no_token_is_required_or_generated() -> None:
    async with ms.serve() as server:
        assert server.admin_token is None
        server.configure(admin_token=TOKEN)
        assert server.admin_token == TOKEN
        server.configure(admin_token=None)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("MOCK_API_KEY", "MOCK_ADMIN_TOKEN"):
        env.pop(name, None)
    env.update(extra)
    return env


_PRETEND_PUBLIC = (
    "import sys; import mock_server._server as s; s.is_loopback = lambda host: False; "
    "import mock_server; sys.exit(mock_server.main(sys.argv[1:]))"
)


async def _run_until_listening(
    argv: list[str], **env: str
) -> tuple[str, str, dict[str, httpx2.Response]]:
    """Start the mock process, GET /_mock/stats with and without a token, stop it (SIGINT)."""
    process = await trio.lowlevel.open_process(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(**env), cwd=ROOT
    )
    assert process.stdout is not None
    assert process.stderr is not None
    out = b""
    responses: dict[str, httpx2.Response] = {}
    try:
        with trio.fail_after(20):
            while b"\n" not in out:
                chunk = await process.stdout.receive_some(4096)
                assert chunk, "the mock exited before listening"
                out += chunk
        url = out.decode().splitlines()[0].rsplit(" ", 1)[1].removesuffix("/api/v2")
        async with httpx2.AsyncClient(base_url=url) as client:
            responses["none"] = await client.get("/_mock/stats")
            responses["given"] = await client.get("/_mock/stats", headers=_admin())
    finally:
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            await process.wait()
    err = b""
    while chunk := await process.stderr.receive_some(4096):
        err += chunk
    assert process.returncode == 0, err
    return out.decode(), err.decode(), responses


@pytest.mark.slow
async def test_process_beyond_loopback_warns_and_prints_a_generated_token() -> None:
    out, err, responses = await _run_until_listening(
        [sys.executable, "-c", _PRETEND_PUBLIC, "--port", "0"]
    )
    assert len(out.splitlines()) == 1  # stdout keeps its one line
    assert "warning" in err
    assert "127.0.0.1" in err
    assert "loopback" in err
    token = err.split("admin token: ", 1)[1].split()[0]
    assert len(token) >= 32
    assert responses["none"].status_code == 401
    assert responses["given"].status_code == 401  # TOKEN is not the generated one
    async with httpx2.AsyncClient() as client:
        with pytest.raises(httpx2.ConnectError):  # the process is gone
            await client.get(out.splitlines()[0].rsplit(" ", 1)[1] + "/models")


@pytest.mark.slow
async def test_process_beyond_loopback_with_a_given_token_does_not_print_it() -> None:
    out, err, responses = await _run_until_listening(
        [sys.executable, "-c", _PRETEND_PUBLIC, "--port", "0"], MOCK_ADMIN_TOKEN=TOKEN
    )
    assert "warning" in err
    assert TOKEN not in err + out
    assert "admin token: " not in err
    assert (responses["none"].status_code, responses["given"].status_code) == (401, 200)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["flag", "env", "file"])
async def test_process_admin_token_from_flag_env_or_file(source: str, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "mock_server", "--port", "0"]
    env: dict[str, str] = {}
    if source == "flag":
        argv += ["--admin-token", TOKEN]
    elif source == "env":
        env["MOCK_ADMIN_TOKEN"] = TOKEN
    else:
        (tmp_path / "mock.toml").write_text(f'admin_token = "{TOKEN}"\n')
        argv += ["--config", str(tmp_path / "mock.toml")]
    out, err, responses = await _run_until_listening(argv, **env)
    assert err == ""  # loopback: no warning
    assert TOKEN not in out
    assert (responses["none"].status_code, responses["given"].status_code) == (401, 200)
