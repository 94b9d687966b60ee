"""HTTPS for the mock: certificate files, and a throwaway CA to rehearse a private-CA setup.

:class:`TLSFiles` names the server's certificate and key (and, for mutual TLS, the CA
whose client certificates the server requires).  :func:`throwaway_ca` makes a new CA with
``trustme`` and a certificate it signed for the names given, writes them as PEM files and
returns their paths: point a client at the CA file (``verify="ca.pem"``, ``--ca-bundle``,
``SSL_CERT_FILE``) as it would be pointed at a company's CA.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TLSFiles", "throwaway_ca"]


@dataclass(frozen=True)
class TLSFiles:
    """The files of an HTTPS mock.

    Attributes:
        certfile: the server's certificate chain (PEM).
        keyfile: its private key (PEM).
        ca: the CA that signed it, for clients to trust (``None`` if not known).
        client_ca: when set, the server requires a client certificate signed by this CA
            (mutual TLS).
        client_cert: a client certificate and key (one PEM file) signed by ``client_ca``,
            when :func:`throwaway_ca` made one.
    """

    certfile: str
    keyfile: str
    ca: str | None = None
    client_ca: str | None = None
    client_cert: str | None = None

    def check(self) -> None:
        """Raise :class:`ValueError` naming a file that is missing or not a certificate/key."""
        for name in ("certfile", "keyfile", "client_ca"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"--{name.replace('_', '-')}: no such file {path!r}")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.certfile, self.keyfile)
        except ssl.SSLError as exc:
            raise ValueError(
                f"--certfile/--keyfile: cannot load {self.certfile!r} and {self.keyfile!r} as a "
                f"PEM certificate and its key: {exc.reason or exc}"
            ) from None


def throwaway_ca(
    directory: str | Path, names: Sequence[str], *, client_certificates: bool = False
) -> TLSFiles:
    """A new CA (``ca.pem``) and a server certificate for ``names`` it signed
    (``server.pem``, ``server.key``), written in ``directory``.

    With ``client_certificates``, the server requires a client certificate signed by the
    same CA, and one is written as ``client.pem`` (certificate and key).

    Raises:
        ValueError: ``trustme`` is not installed (it comes with the ``mock`` extra).
    """
    try:
        import trustme
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ValueError(
            "a throwaway CA needs the trustme package: pip install trustme, or from a clone "
            "of paradigm-trio: pip install '.[mock]'"
        ) from None
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="mock_server throwaway CA")
    server = ca.issue_cert(*names)
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    files["cert"].write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    client = None
    if client_certificates:
        client = folder / "client.pem"
        ca.issue_cert("mock-client@example.invalid").private_key_and_cert_chain_pem.write_to_path(
            str(client)
        )
    return TLSFiles(
        certfile=str(files["cert"]),
        keyfile=str(files["key"]),
        ca=str(files["ca"]),
        client_ca=str(files["ca"]) if client_certificates else None,
        client_cert=None if client is None else str(client),
    )
