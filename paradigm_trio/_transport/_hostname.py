"""Host names that cannot be looked up, refused with the reason before anything is sent.

A name is looked up as trio does it (``trio.socket.getaddrinfo``): first through
``socket.getaddrinfo``, which encodes it with Python's ``idna`` codec (IDNA 2003), then,
for a non-ASCII name, encoded with the ``idna`` package (IDNA 2008, UTS 46 mapping).
A name that either encoding refuses raises :class:`UnicodeError` deep inside the
look-up: an empty label (``a..b``, ``.example``), a label longer than 63 characters
(once encoded), or characters a host name cannot have (``☃.example``).
:func:`host_problem` says which, so that ``Client(base_url=...)``, ``proxy=`` and the
proxy variables refuse such a name when they are given, and the transport before it
connects.

An ASCII name is otherwise the resolver's to judge: ``a_b.internal`` or ``-x.example``
may be in ``/etc/hosts``, and are looked up.  An IP address is never refused.
"""

from __future__ import annotations

import contextlib
import functools
import re
from urllib.parse import urlsplit

import idna

__all__ = ["MAX_LABEL", "host_problem", "url_host"]

MAX_LABEL = 63
"""The most characters a label (the text between two dots) may have, in DNS."""

_DOTS = re.compile("[.\u3002\uff0e\uff61]")
"""The characters IDNA splits a name on (RFC 3490, 3.1)."""

_EMPTY_LABEL = "it has an empty label (two dots in a row, or a dot at the start)"


@functools.lru_cache(maxsize=256)  # checked before each new connection
def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be looked up, in words, or ``None`` if it can.

    For example ``"it has an empty label (two dots in a row, or a dot at the start)"``
    for ``"a..b"``.  One trailing dot (an absolute name, ``example.com.``) is allowed.
    """
    try:
        host.encode("idna")  # socket.getaddrinfo's encoding, which trio's look-up starts with
        if not host.isascii():
            idna.encode(host, uts46=True)  # trio's encoding of a non-ASCII name
    except UnicodeError as exc:  # idna.IDNAError is one
        return _reason(host, exc)
    return None


def _reason(host: str, exc: UnicodeError) -> str:
    """What is wrong with ``host``, which its encoding refused with ``exc``."""
    labels = _DOTS.split(host)
    if len(labels) > 1 and not labels[-1]:
        labels.pop()  # the trailing dot of an absolute name
    if not all(labels):
        return _EMPTY_LABEL
    for label in labels:
        encoded = "" if label.isascii() else _ace(label)
        size = len(encoded or label)
        if size > MAX_LABEL:
            shown = label if len(label) <= 20 else label[:16] + "..."
            once = f" once encoded ({encoded[:16]}...)" if encoded else ""
            return (
                f"its label {shown!r} is {size} characters long{once}, more than the "
                f"{MAX_LABEL} a label may have"
            )
    detail = str(exc) if isinstance(exc, idna.IDNAError) else _codec(exc)
    return f"it has characters a host name cannot have ({detail})"


def _ace(label: str) -> str:
    """The ASCII form (``xn--...``) of a non-ASCII label, however long."""
    with contextlib.suppress(idna.IDNAError):  # then its characters are the problem
        label = idna.uts46_remap(label)
    return "xn--" + label.encode("punycode").decode("ascii")


def _codec(exc: UnicodeError) -> str:
    """The reason Python's ``idna`` codec gives, without its preamble."""
    if isinstance(exc, UnicodeEncodeError):  # Python 3.13
        return exc.reason
    text = str(exc)
    inner = re.fullmatch(r"encoding with 'idna' codec failed \((?:\w+: )?(.*)\)", text)
    return inner.group(1) if inner else text


def url_host(url: object) -> str | None:
    """The host of ``url`` as written (``None`` if it has none, or is not a URL): for a
    message about a URL that ``httpx2`` refused."""
    if not isinstance(url, str):
        return None
    try:
        return urlsplit(url).hostname or None
    except ValueError:
        return None
