"""Masking the credentials of URLs in a text (:func:`mask_credentials`, public), below
:mod:`._config`, whose reprs and ``RedisQuota.display_url`` use it, and :mod:`._redact`,
whose :class:`~._redact.Redactor` masks every server text with it."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MASK", "QUERY_SECRETS", "mask_bad_url", "mask_credentials"]

MASK: Final = "***"
"""What a redacted key or a masked password is replaced with."""

# Bounded, so that a match is shorter than Redactor.clip's margin.
# The password runs to the authority's last ``@`` (a password may hold an ``@``).
_URL_PASSWORD: Final = re.compile(
    r"([A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s/?#@:]{0,256}:)([^\s/?#]{1,256})@"
)

# The query parameters that carry a credential (see mask_credentials).
QUERY_SECRETS: Final = (
    "password", "passwd", "pass", "pwd", "secret", "token", "access_token", "auth", "key",
    "api_key", "apikey",
)  # fmt: skip
_QUERY_SECRET: Final = re.compile(
    r"([?&;](?:" + "|".join(QUERY_SECRETS) + r")=)[^&#\s'\"<>]{1,256}", re.IGNORECASE
)


def mask_credentials(text: str) -> str:
    """``text`` with the credentials of every URL in it shown as ``***``.

    Masked: the password of the authority (``scheme://user:password@``, a well-formed
    URL: its password has no ``/?#@`` or whitespace), and the value of every query
    parameter named (in any case) ``password``, ``passwd``, ``pass``, ``pwd``,
    ``secret``, ``token``, ``access_token``, ``auth``, ``key``, ``api_key`` or
    ``apikey`` (``redis://host/0?password=...``: the value runs to the next ``&``,
    ``#``, quote or whitespace).  A text without ``://`` is returned as it is.
    """
    if "://" not in text:
        return text
    text = _URL_PASSWORD.sub(_masked_password, text)
    return _QUERY_SECRET.sub(rf"\1{MASK}", text) if "=" in text else text


def mask_bad_url(url: str) -> str:
    """A URL that does not parse, for a message: all between ``://`` and its last ``@``
    (where its credentials would be) shown as ``***``."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, sep, _ = head.partition("://")
    return f"{scheme}{sep}{MASK}@{tail}" if sep else f"{MASK}@{tail}"


def _masked_password(match: re.Match[str]) -> str:
    return f"{match.group(1)}{MASK}@"
