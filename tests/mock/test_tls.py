"""The mock over HTTPS: its command-line options, refused when incomplete or contradictory."""

from __future__ import annotations

from pathlib import Path

import pytest

import mock_server as ms


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--certfile", "c.pem"], "HTTPS needs both --certfile and --keyfile"),
        (["--client-ca", "ca.pem"], "--client-ca needs HTTPS"),
        (["--require-client-cert"], "go with --throwaway-ca"),
        (["--tls-name", "x.internal"], "go with --throwaway-ca"),
        (["--throwaway-ca", "--certfile", "c.pem"], "--throwaway-ca makes its own files"),
        (["--certfile", "missing.pem", "--keyfile", "k.pem"], "--certfile: no such file"),
    ],
)
def test_bad_tls_options_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert ms.main(["--port", "0", *argv]) == 2
    assert words in capsys.readouterr().err


def test_files_that_are_not_a_certificate_and_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "c.pem").write_text("nope")
    (tmp_path / "k.pem").write_text("nope")
    argv = [
        "--port",
        "0",
        "--certfile",
        str(tmp_path / "c.pem"),
        "--keyfile",
        str(tmp_path / "k.pem"),
    ]
    assert ms.main(argv) == 2
    assert "cannot load" in capsys.readouterr().err


def test_a_throwaway_ca_signs_the_names_asked_for(tmp_path: Path) -> None:
    from cryptography import x509

    files = ms.throwaway_ca(tmp_path, ["paradigm.internal", "127.0.0.1"], client_certificates=True)
    cert = x509.load_pem_x509_certificate(Path(files.certfile).read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "paradigm.internal" in names.get_values_for_type(x509.DNSName)
    assert files.client_ca == files.ca
    assert files.client_cert is not None
    assert Path(files.client_cert).read_text().count("BEGIN CERTIFICATE") == 1
