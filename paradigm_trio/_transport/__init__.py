"""The transport: HTTP/1.1 over trio, written by hand (connections, pool, TLS, proxies).

This module is the transport's one entry: the rest of the package imports what it needs
from here, never from the modules inside (an import-linter contract keeps it so).
"""

from __future__ import annotations

from ._dial import InvalidHostName, ProxyRefused, TLSConnectError
from ._hostname import host_problem, url_host
from ._lane import FastLane, header_map
from ._proxies import ProxyRoute, ProxyTypes
from ._resolve import is_address
from ._tls import CertTypes, VerifyTypes, describe_verify, system_trust_store
from ._transport import Answering, Origin, TrioTransport, origin_of

__all__ = [
    "Answering",
    "CertTypes",
    "FastLane",
    "InvalidHostName",
    "Origin",
    "ProxyRefused",
    "ProxyRoute",
    "ProxyTypes",
    "TLSConnectError",
    "TrioTransport",
    "VerifyTypes",
    "describe_verify",
    "header_map",
    "host_problem",
    "is_address",
    "origin_of",
    "system_trust_store",
    "url_host",
]
