"""``check_connection`` / ``paradigm-trio doctor``, and the network options of the commands.

Against the mock over HTTPS (a throwaway CA), directly and through a real forward proxy
(``proxy.py``); the command line is run as a subprocess, the mock in the test's process.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trustme

import mock_server as ms
import paradigm_trio as pt

from ..fakenet import FakeResolver
from .forwardproxy import forward_proxy

pytestmark = pytest.mark.anyio

KEY = "sk-doctor-test-key-0123456789"
NAME = "paradigm.internal"


@pytest.fixture(autouse=True)
def _no_ambient_ca(monkeypatch: pytest.MonkeyPatch) -> None:
    """The "trust" step names the CAs in use: not a developer's SSL_CERT_FILE."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture
async def https(tmp_path: Path) -> AsyncIterator[tuple[ms.MockServer, ms.TLSFiles]]:
    files = ms.throwaway_ca(tmp_path / "ca", [NAME, "127.0.0.1"])
    async with ms.serve(ms.MockConfig(api_key=KEY), tls=files) as server:
        yield server, files


def names(check: pt.ConnectionCheck) -> list[str]:
    return [step.name for step in check.steps]


async def test_every_step_of_a_direct_https_connection(
    https: tuple[ms.MockServer, ms.TLSFiles],
) -> None:
    server, files = https
    check = await pt.check_connection(api_key=KEY, base_url=server.url, verify=files.ca)
    assert check.ok, str(check)
    assert names(check) == [
        "configuration", "route", "trust", "resolve", "connect", "tls", "models",
    ]  # fmt: skip
    text = str(check)
    assert "direct (no proxy configured for it)" in text
    assert "127.0.0.1: an IP address, no look-up" in text
    assert "certificate for 127.0.0.1, issued by mock_server throwaway CA" in text
    assert "GET /models: 200, 4 model(s)" in text
    assert KEY not in text


async def test_every_step_through_a_proxy_and_the_failing_one(
    https: tuple[ms.MockServer, ms.TLSFiles], tmp_path: Path
) -> None:
    server, files = https
    base = server.url.replace("127.0.0.1", NAME)
    async with forward_proxy(tmp_path / "proxy", basic_auth="alice:pw") as proxy:
        good = proxy.url.replace("://", "://alice:pw@")
        check = await pt.check_connection(api_key=KEY, base_url=base, verify=files.ca, proxy=good)
        assert check.ok, str(check)
        assert names(check) == [
            "configuration", "route", "trust", "resolve", "connect", "tunnel", "tls", "models",
        ]  # fmt: skip
        assert f"through the proxy {proxy.url} (from proxy=)" in str(check)
        bad = proxy.url.replace("://", "://alice:nope@")
        check = await pt.check_connection(api_key=KEY, base_url=base, verify=files.ca, proxy=bad)
    assert not check.ok
    failed = check.steps[-1]
    assert (failed.name, failed.ok) == ("tunnel", False)
    assert "407 Proxy Authentication Required" in failed.detail
    assert "nope" not in str(check)


async def test_the_failing_step_says_what_to_do(
    https: tuple[ms.MockServer, ms.TLSFiles], tmp_path: Path
) -> None:
    server, files = https
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    check = await pt.check_connection(api_key=KEY, base_url=server.url, verify=str(other))
    assert (check.steps[-1].name, check.steps[-1].ok) == ("tls", False)
    assert "unable to get local issuer certificate" in check.steps[-1].detail
    check = await pt.check_connection(api_key="sk-wrong", base_url=server.url, verify=files.ca)
    assert (check.steps[-1].name, check.steps[-1].ok) == ("models", False)
    assert "check the API key" in str(check.steps[-1].fix)
    root = server.url.removesuffix("/api/v2")
    check = await pt.check_connection(api_key=KEY, base_url=root, verify=files.ca)
    assert "the base URL must be the API root" in str(check.steps[-1].fix)
    check = await pt.check_connection(api_key=KEY, base_url="https://127.0.0.1:1/api/v2")
    assert (check.steps[-1].name, check.steps[-1].ok) == ("connect", False)
    assert "set HTTPS_PROXY or pass --proxy" in str(check.steps[-1].fix)
    check = await pt.check_connection(base_url=server.url)  # no key
    assert names(check) == ["configuration"]
    assert "no API key" in check.steps[0].detail


@pytest.fixture
async def counting() -> AsyncIterator[FakeResolver]:
    """The system's resolver, its look-ups counted."""
    resolver = FakeResolver(None, delay=0)
    previous = trio.socket.set_custom_hostname_resolver(resolver)
    yield resolver
    trio.socket.set_custom_hostname_resolver(previous)


async def test_a_host_name_is_looked_up_once_and_connected_to(counting: FakeResolver) -> None:
    async with ms.serve(ms.MockConfig(api_key=KEY)) as server:
        base = server.url.replace("127.0.0.1", "localhost")
        check = await pt.check_connection(api_key=KEY, base_url=base)
    assert check.ok, str(check)
    assert names(check) == ["configuration", "route", "resolve", "connect", "models"]
    detail = check.steps[2].detail
    assert re.fullmatch(r"localhost: [0-9a-f.:, ]+ \(looked up in [0-9.]+ (ms|s)\)", detail)
    assert "127.0.0.1" in detail or "::1" in detail
    port = int(server.root_url.rsplit(":", 1)[1])
    # One look-up: the connections (the "connect" step's, the request's) reuse its answer.
    assert counting.lookups == [(b"localhost", port)]


async def test_through_a_proxy_the_proxy_host_is_looked_up(
    https: tuple[ms.MockServer, ms.TLSFiles], tmp_path: Path, counting: FakeResolver
) -> None:
    server, files = https
    base = server.url.replace("127.0.0.1", NAME)  # the proxy's to resolve: not ours
    async with forward_proxy(tmp_path / "proxy") as proxy:
        proxy_url = proxy.url.replace("127.0.0.1", "localhost")
        check = await pt.check_connection(
            api_key=KEY, base_url=base, verify=files.ca, proxy=proxy_url
        )
    assert check.ok, str(check)
    resolve = check.steps[names(check).index("resolve")]
    assert resolve.detail.startswith("localhost (the proxy): "), resolve.detail
    assert counting.lookups == [(b"localhost", proxy.port)]


async def test_a_name_that_does_not_resolve_fails_the_resolve_step() -> None:
    with pytest.raises(socket.gaierror) as trios:  # .invalid never resolves (RFC 2606)
        await trio.socket.getaddrinfo("paradigm.invalid", 443, type=socket.SOCK_STREAM)
    base = "https://paradigm.invalid/api/v2"
    check = await pt.check_connection(api_key=KEY, base_url=base)
    assert names(check) == ["configuration", "route", "trust", "resolve"]
    failed = check.steps[-1]
    assert not failed.ok
    assert failed.detail == f"cannot resolve paradigm.invalid: {trios.value}"
    assert "check the spelling of the host in the base URL" in str(failed.fix)
    assert "DNS settings" in str(failed.fix)
    check = await pt.check_connection(api_key=KEY, base_url=base, proxy="http://proxy.invalid:3128")
    failed = check.steps[-1]
    assert (failed.name, failed.ok) == ("resolve", False)
    assert failed.detail.startswith("cannot resolve proxy.invalid (the proxy): ")
    assert "check the spelling of the host in the proxy URL (from proxy=)" in str(failed.fix)


@pytest.mark.parametrize(
    ("host", "why"),
    [
        pytest.param(
            "a" * 64 + ".invalid",
            f"its label '{'a' * 16}...' is 64 characters long, more than the 63 a label may have",
            id="long-label",
        ),
        pytest.param(
            "paradigm..invalid",
            "it has an empty label (two dots in a row, or a dot at the start)",
            id="empty-label",
        ),
    ],
)
async def test_a_name_that_cannot_be_looked_up_fails_the_configuration_step(
    host: str, why: str
) -> None:
    """A name the resolver could not even encode: refused with the client, as bad
    configuration, before any look-up (trio's look-up raised a bare ``UnicodeError``)."""
    check = await pt.check_connection(api_key=KEY, base_url=f"http://{host}/api/v2")
    assert [(step.name, step.ok) for step in check.steps] == [("configuration", False)]
    assert f"the host {host!r} is not a valid host name: {why}" in check.steps[0].detail
    assert KEY not in str(check)
    base = "https://paradigm.example/api/v2"
    check = await pt.check_connection(api_key=KEY, base_url=base, proxy=f"http://{host}:3128")
    assert [(step.name, step.ok) for step in check.steps] == [("configuration", False)]
    assert check.steps[0].detail.startswith(f"proxy=: the proxy's host {host!r} is not a valid")


async def test_a_connection_refused_says_what_it_means_now_that_the_name_resolved() -> None:
    with trio.socket.socket() as sock:  # bound, not listening: connecting is refused
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        check = await pt.check_connection(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v2")
    assert names(check) == ["configuration", "route", "resolve", "connect"]
    failed = check.steps[-1]
    assert not failed.ok
    assert f"cannot connect to 127.0.0.1:{port}" in failed.detail
    fix = str(failed.fix)
    assert fix.startswith("the host's address is known (resolve), but nothing accepted"), fix
    assert "port of the base URL" in fix
    assert "listening" in fix
    assert "firewall" in fix
    assert "host and port" not in fix  # the host is known good: the resolve step passed


async def test_a_slow_look_up_is_bounded_by_the_connect_timeout_and_can_be_cancelled() -> None:
    previous = trio.socket.set_custom_hostname_resolver(FakeResolver(delay=3600))
    base = "https://paradigm.example/api/v2"
    try:
        timeouts = pt.Timeouts(connect=0.25, read=5, attempt=10)
        start = trio.current_time()
        check = await pt.check_connection(api_key=KEY, base_url=base, timeouts=timeouts)
        assert trio.current_time() - start < 5
        failed = check.steps[-1]
        assert (failed.name, failed.ok) == ("resolve", False)
        assert failed.detail == "looking up paradigm.example timed out after 0.25 s"
        assert "DNS" in str(failed.fix)
        returned = False
        with trio.move_on_after(0.25) as scope:  # within the connect timeout (10 s)
            await pt.check_connection(api_key=KEY, base_url=base)
            returned = True
        assert scope.cancelled_caught
        assert not returned
    finally:
        trio.socket.set_custom_hostname_resolver(previous)


async def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    environ = {**os.environ, **(env or {})}
    return await trio.run_process(
        [sys.executable, "-m", "paradigm_trio", *args],
        capture_stdout=True, capture_stderr=True, check=False, env=environ,
    )  # fmt: skip


async def test_the_doctor_command(https: tuple[ms.MockServer, ms.TLSFiles], tmp_path: Path) -> None:
    server, files = https
    env = {"PARADIGM_API_KEY": KEY}
    done = await run("doctor", "--base-url", server.url, "--ca-bundle", files.ca, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "configuration"], ["ok", "route"], ["ok", "trust"], ["ok", "resolve"],
        ["ok", "connect"], ["ok", "tls"], ["ok", "models"],
    ]  # fmt: skip
    done = await run("doctor", "--base-url", server.url, env=env)
    assert done.returncode == 1
    assert re.search(r"^FAILED +tls +the TLS certificate of", done.stdout.decode(), re.M)
    done = await run("doctor", "--base-url", server.url, "--insecure", env=env)
    assert done.returncode == 0
    assert "WARNING: --insecure: TLS certificates are NOT verified" in done.stderr.decode()
    done = await run("doctor", "--insecure", "--ca-bundle", files.ca, env=env)
    assert done.returncode == 2
    assert "--ca-bundle and --insecure contradict each other" in done.stderr.decode()
    done = await run("doctor", "--base-url", "https://paradigm.invalid/api/v2", env=env)
    assert done.returncode == 1
    out = done.stdout.decode()
    assert re.search(r"^FAILED +resolve +cannot resolve paradigm\.invalid: ", out, re.M), out
    assert re.search(r"^ +fix: check the spelling of the host in the base URL", out, re.M), out


async def test_batch_and_speed_test_take_the_network_options(tmp_path: Path) -> None:
    files = ms.throwaway_ca(tmp_path / "ca", [NAME, "127.0.0.1"], client_certificates=True)
    (tmp_path / "in.jsonl").write_text(
        "".join(
            f'{{"custom_id": "r{i}", "messages": [{{"role": "user", "content": "Hi"}}]}}\n'
            for i in range(5)
        )
    )
    async with (
        ms.serve(ms.MockConfig(api_key=KEY), tls=files) as server,
        forward_proxy(tmp_path / "proxy") as proxy,
    ):
        base = server.url.replace("127.0.0.1", NAME)
        tls = ["--ca-bundle", files.ca, "--client-cert", str(files.client_cert)]
        env = {"PARADIGM_API_KEY": KEY, "HTTPS_PROXY": proxy.url}
        out = str(tmp_path / "out.jsonl")
        done = await run("batch", str(tmp_path / "in.jsonl"), "-o", out, "--base-url", base,
                         "-q", *tls, env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        done = await run("speed-test", "-n", "3", "--no-replies", "--base-url", base, *tls,
                         env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        # Without the environment's proxy, the name does not resolve.
        done = await run("speed-test", "-n", "1", "--base-url", base, "--no-env-proxy",
                         *tls, env={**env, "SSL_CERT_FILE": files.ca})  # fmt: skip
        assert done.returncode == 1
        assert f"cannot connect to {NAME}" in done.stderr.decode()
        assert server.stats().total == 5 + 6
    assert {line.split()[0] for line in proxy.upstream()} == {"CONNECT"}


async def test_the_mock_command_serves_https_with_a_throwaway_ca(tmp_path: Path) -> None:
    folder = tmp_path / "mock-ca"
    command = [sys.executable, "-m", "mock_server", "--port", "0", "--throwaway-ca",
               str(folder), "--require-client-cert", "--api-key", KEY]  # fmt: skip
    async with trio.open_nursery() as nursery:
        process = await nursery.start(
            lambda task_status: trio.run_process(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
                task_status=task_status,
            )
        )  # fmt: skip
        line = await _read_line(process.stdout)
        url = line.rsplit(" ", 1)[1]
        assert url.startswith("https://127.0.0.1:")
        assert f"throwaway CA: {folder / 'ca.pem'}" in await _read_line(process.stderr)
        ca, client_pem = str(folder / "ca.pem"), str(folder / "client.pem")
        async with pt.Client(api_key=KEY, base_url=url, verify=ca, cert=client_pem) as client:
            assert (await client.models())[0].id
        process.terminate()


async def _read_line(stream: trio.abc.ReceiveStream) -> str:
    data = b""
    with trio.fail_after(30):
        while not data.endswith(b"\n"):
            chunk = await stream.receive_some(1)
            assert chunk, data
            data += chunk
    return data.decode().strip()
