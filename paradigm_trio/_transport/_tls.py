"""TLS settings of the default transport: ``verify=``, ``cert=`` and ``trust_env``, as httpx2.

:func:`ssl_context` turns the arguments into one :class:`ssl.SSLContext`, with a clear
:class:`~paradigm_trio.ConfigurationError` for a file that is missing or is not what it
should be (raised when the client is built, not at its first request):

* ``verify=True`` (the default): the certificates trusted by default, through
  ``httpx2.create_ssl_context()``, which reads ``SSL_CERT_FILE`` then ``SSL_CERT_DIR``
  when ``trust_env`` is true (as httpx2 does);
* ``verify="ca-bundle.pem"`` (a file of PEM certificates) or a folder of hashed
  certificates (``c_rehash``): trust those CAs, and only them;
* ``verify=ssl_context``: that context, as it is (``cert=`` is loaded into it);
* ``verify=False``: no verification at all (the transport logs a warning);
* ``cert="client.pem"`` (certificate and key in one file), ``("client.crt", "client.key")``
  or ``("client.crt", "client.key", "password")``: a client certificate for mutual TLS.

:func:`system_trust_store` is the operating system's trust store, through the
``truststore`` package (the ``paradigm-trio[truststore]`` extra).
"""

from __future__ import annotations

import os
import ssl
from typing import TypeAlias

import httpx2

from .._errors import ConfigurationError

__all__ = [
    "CertTypes",
    "VerifyTypes",
    "check_environment",
    "describe_verify",
    "ssl_context",
    "system_trust_store",
]

StrPath: TypeAlias = str | os.PathLike[str]
VerifyTypes: TypeAlias = bool | str | os.PathLike[str] | ssl.SSLContext
"""What ``verify=`` takes: ``True``, ``False``, a CA bundle (file or folder), a context."""
CertTypes: TypeAlias = (
    str | os.PathLike[str] | tuple[StrPath, StrPath] | tuple[StrPath, StrPath, str | None]
)
"""What ``cert=`` takes: a PEM file, ``(certificate, key)`` or ``(certificate, key, password)``."""

SSL_CERT_FILE = "SSL_CERT_FILE"
SSL_CERT_DIR = "SSL_CERT_DIR"


def ssl_context(
    verify: VerifyTypes = True, cert: CertTypes | None = None, *, trust_env: bool = True
) -> ssl.SSLContext:
    """The SSL context of ``verify``, ``cert`` and ``trust_env`` (see the module docstring).

    Raises:
        ConfigurationError: a CA bundle, certificate or key that is missing or cannot be
            loaded (a wrong key password included), an ``SSL_CERT_FILE`` or
            ``SSL_CERT_DIR`` that does not exist, or an argument of the wrong type.
    """
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is True:
        context = _default_context(trust_env)
    elif verify is False:
        context = httpx2.create_ssl_context(verify=False)
    elif isinstance(verify, str | os.PathLike):
        context = _bundle_context(os.fspath(verify), "verify=")
    else:
        raise ConfigurationError(
            "verify= must be True, False, the path of a CA bundle or an ssl.SSLContext, "
            f"got {type(verify).__name__}"
        )
    if cert is not None:
        _load_cert(context, cert)
    return context


def check_environment() -> None:
    """Refuse an ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` that does not exist (a cheap check,
    made when a client is built; the bundle itself is loaded at the first ``https``
    connection)."""
    for name in (SSL_CERT_FILE, SSL_CERT_DIR):
        value = os.environ.get(name)
        if value:
            if not os.path.exists(value):
                raise ConfigurationError(f"${name}={value!r}: no such CA bundle file or folder")
            return


def _default_context(trust_env: bool) -> ssl.SSLContext:
    if trust_env:
        for name in (SSL_CERT_FILE, SSL_CERT_DIR):
            value = os.environ.get(name)
            if value:
                # What httpx2 would do, with a message that names the variable.
                return _bundle_context(value, f"${name}=")
    return httpx2.create_ssl_context(trust_env=False)


def _bundle_context(path: str, origin: str) -> ssl.SSLContext:
    """A context trusting the CAs of ``path`` (a PEM file, or a folder of hashed ones)."""
    what = f"{origin}{path!r}"
    if not os.path.exists(path):
        raise ConfigurationError(f"{what}: no such CA bundle file or folder")
    try:
        if os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigurationError(
            f"{what}: cannot load it as a CA bundle (PEM certificates): {_reason(exc)}"
        ) from None


def _load_cert(context: ssl.SSLContext, cert: CertTypes) -> None:
    if isinstance(cert, str | os.PathLike):
        certfile, keyfile, password = os.fspath(cert), None, None
    elif isinstance(cert, tuple) and len(cert) in (2, 3):
        certfile, keyfile = os.fspath(cert[0]), os.fspath(cert[1])
        password = cert[2] if len(cert) == 3 else None
    else:
        raise ConfigurationError(
            "cert= must be a path, (certificate, key) or (certificate, key, password), "
            f"got {type(cert).__name__}"
        )
    for path in (certfile, keyfile):
        if path is not None and not os.path.isfile(path):
            raise ConfigurationError(f"cert=: no such file {path!r}")
    try:
        context.load_cert_chain(certfile, keyfile, password)
    except (ssl.SSLError, OSError, ValueError) as exc:
        # The reason never holds the password; the message says where to look.
        files = certfile if keyfile is None else f"{certfile!r} and {keyfile!r}"
        hint = "is the key's password right? " if password is not None else ""
        raise ConfigurationError(
            f"cert=: cannot load the client certificate from {files}: {_reason(exc)} "
            f"({hint}the files must be PEM: the certificate, then its private key, "
            "in one file or two)"
        ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def system_trust_store() -> ssl.SSLContext:
    """An SSL context that trusts the operating system's certificate store.

    On Windows and macOS that is the system's own store (where a company's CA is
    usually installed by its IT department); on Linux, the distribution's bundle.  Pass it
    as ``verify=``; ``cert=`` may be given with it.  Needs the ``truststore`` package:
    ``pip install truststore`` (the ``truststore`` extra).

    Raises:
        ConfigurationError: ``truststore`` is not installed.
    """
    try:
        import truststore
    except ImportError:
        raise ConfigurationError(
            "the system trust store needs the truststore package: pip install truststore, "
            "or from a clone of paradigm-trio: pip install '.[truststore]'"
        ) from None
    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def describe_verify(verify: VerifyTypes, *, trust_env: bool) -> str:
    """Which certificates are trusted, in words (for ``doctor``)."""
    if verify is False:
        return "none: certificate verification is OFF (verify=False)"
    if isinstance(verify, ssl.SSLContext):
        return f"those of the given SSL context ({type(verify).__module__}.SSLContext)"
    if verify is not True:
        return f"the CA bundle {os.fspath(verify)!r}"
    if trust_env:
        for name in (SSL_CERT_FILE, SSL_CERT_DIR):
            if os.environ.get(name):
                return f"the CA bundle ${name}={os.environ[name]!r}"
    return "the default CA certificates"
