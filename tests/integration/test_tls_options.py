"""TLS options against the mock served over HTTPS with a throwaway CA (trustme).

``verify=`` (a CA bundle path), ``SSL_CERT_FILE``, a wrong CA refused with the reason and
not retried, mutual TLS satisfied by ``cert=`` (one file, or a key with a password),
``verify=False`` warned about once per client, files that cannot be loaded refused when
the client is built.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

import mock_server as ms
import paradigm_trio as pt

from ..system import need

pytestmark = pytest.mark.anyio

KEY = "sk-tls-test-key-0123456789"
HI = [{"role": "user", "content": "Hi"}]


@asynccontextmanager
async def https_mock(
    folder: Path, *, client_certificates: bool = False
) -> AsyncIterator[tuple[ms.MockServer, ms.TLSFiles]]:
    files = ms.throwaway_ca(
        folder, ["127.0.0.1", "localhost"], client_certificates=client_certificates
    )
    async with ms.serve(ms.MockConfig(api_key=KEY), tls=files) as server:
        yield server, files


async def answer(server: ms.MockServer, **kwargs: object) -> str:
    async with pt.Client(api_key=KEY, base_url=server.url, **kwargs) as client:  # type: ignore[arg-type]
        return (await client.chat(HI)).text


async def test_a_private_ca_trusted_with_verify_a_path(tmp_path: Path) -> None:
    async with https_mock(tmp_path) as (server, files):
        assert server.url.startswith("https://127.0.0.1:")
        assert "Hi" in await answer(server, verify=files.ca)
        assert "Hi" in await answer(server, verify=Path(files.ca))
        assert server.stats().total == 2


async def test_a_private_ca_from_ssl_cert_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    async with https_mock(tmp_path) as (server, _):
        assert "Hi" in await answer(server)
        # trust_env=False: the environment is not read, the default CAs do not know it.
        with pytest.raises(pt.CertificateVerificationError):
            await answer(server, trust_env=False)


async def test_a_wrong_ca_is_refused_with_the_reason_and_not_retried(tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    async with https_mock(tmp_path) as (server, _):
        with pytest.raises(pt.CertificateVerificationError) as info:
            await answer(server, verify=str(other))
        assert server.stats().total == 0
    error = info.value
    assert len(error.attempts) == 1
    assert [a.cause for a in error.attempts] == ["tls"]
    assert "unable to get local issuer certificate" in error.reason
    assert error.reason in str(error)
    assert 'Client(verify="ca-bundle.pem")' in str(error)


async def test_mutual_tls_required_by_the_server_and_given_with_cert(tmp_path: Path) -> None:
    async with https_mock(tmp_path, client_certificates=True) as (server, files):
        assert files.client_cert is not None
        retry = pt.RetryPolicy(attempts=1)
        with pytest.raises(pt.APIConnectionError) as info:
            await answer(server, verify=files.ca, retry=retry)
        assert "if the server requires a client certificate, give it with cert=" in str(info.value)
        assert server.stats().total == 0
        assert "Hi" in await answer(server, verify=files.ca, cert=files.client_cert)
        # The key in its own file, encrypted with a password.
        crt, key = encrypted_client_key(files.client_cert, tmp_path, b"p4ssw0rd")
        assert "Hi" in await answer(server, verify=files.ca, cert=(crt, key, "p4ssw0rd"))
        assert server.stats().total == 2


def encrypted_client_key(pem: str, folder: Path, password: bytes) -> tuple[str, str]:
    """Split a certificate-and-key PEM file in two, the key encrypted with ``password``."""
    data = Path(pem).read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    start = data.index(b"-----BEGIN CERTIFICATE-----")
    (folder / "client.crt").write_bytes(data[start:])
    (folder / "client.key").write_bytes(encrypted)
    return str(folder / "client.crt"), str(folder / "client.key")


async def test_verify_false_works_and_warns_once_per_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="paradigm_trio")
    async with https_mock(tmp_path) as (server, _):
        async with pt.Client(api_key=KEY, base_url=server.url, verify=False) as client:
            for _ in range(3):
                await client.chat(HI)
        warnings = [r for r in caplog.records if r.name == "paradigm_trio"]
        assert len(warnings) == 1
        assert "verification is OFF (verify=False)" in warnings[0].getMessage()
        pt.Client(api_key=KEY, base_url=server.url, verify=False)
        assert len([r for r in caplog.records if r.name == "paradigm_trio"]) == 2
        assert KEY not in caplog.text


def test_files_that_cannot_be_loaded_are_refused_when_the_client_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = ms.throwaway_ca(tmp_path, ["localhost"], client_certificates=True)
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate")
    crt, key = encrypted_client_key(str(files.client_cert), tmp_path, b"right-password")
    cases: list[tuple[dict[str, object], str]] = [
        ({"verify": str(tmp_path / "missing.pem")}, "no such CA bundle file or folder"),
        ({"verify": str(not_pem)}, "cannot load it as a CA bundle"),
        ({"verify": 3}, "verify= must be True, False, the path of a CA bundle"),
        ({"cert": str(tmp_path / "missing.pem")}, "cert=: no such file"),
        ({"cert": str(not_pem)}, "cannot load the client certificate"),
        ({"cert": (crt, key, "wrong-password")}, "is the key's password right?"),
    ]
    for kwargs, words in cases:
        with pytest.raises(pt.ConfigurationError, match=words) as info:
            pt.Client(api_key=KEY, **kwargs)  # type: ignore[arg-type]
        assert "wrong-password" not in str(info.value)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "gone.pem"))
    with pytest.raises(pt.ConfigurationError, match=r"\$SSL_CERT_FILE=.*no such CA bundle"):
        pt.Client(api_key=KEY)
    pt.Client(api_key=KEY, trust_env=False)  # the environment not read: fine


def test_network_options_with_your_own_transport_are_refused() -> None:
    with pytest.raises(pt.ConfigurationError, match="proxy=, verify= configure the client's own"):
        pt.Client(api_key=KEY, transport=pt.TrioTransport(), proxy="http://p:3128", verify=False)


async def test_the_system_trust_store_does_not_know_a_throwaway_ca(tmp_path: Path) -> None:
    context = pt.system_trust_store()
    assert type(context).__module__.startswith("truststore")
    async with https_mock(tmp_path) as (server, _):
        with pytest.raises(pt.CertificateVerificationError):
            await answer(server, verify=pt.system_trust_store())


def test_the_system_trust_store_without_truststore_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "truststore", None)
    with pytest.raises(
        pt.ConfigurationError, match=r"pip install truststore, .*pip install '\.\[truststore\]'"
    ):
        pt.system_trust_store()


async def test_a_folder_of_hashed_cas_from_verify_or_ssl_cert_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cas"
    folder.mkdir()
    async with https_mock(tmp_path) as (server, files):
        shutil.copy(files.ca, folder / "mock-ca.pem")
        openssl = need("openssl", "openssl", "a folder of hashed CAs")
        subprocess.run([openssl, "rehash", str(folder)], check=True, capture_output=True)
        assert "Hi" in await answer(server, verify=str(folder))
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.setenv("SSL_CERT_DIR", str(folder))
        assert "Hi" in await answer(server)
