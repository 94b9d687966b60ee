"""Reading the server's retry instructions: ``retry-after-ms``, ``Retry-After``, ``x-should-retry``.

The decision itself (what is retryable, the backoff formula) is documented on
:class:`~paradigm_trio.RetryPolicy`; the loop that applies it lives in ``_client.py``.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

__all__ = ["parse_retry_after", "parse_should_retry"]


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The wait in seconds the server asks for, or ``None`` if it asks for none.

    ``retry-after-ms`` (milliseconds, possibly fractional) wins over ``Retry-After``, which
    is either a number of seconds or an HTTP date (compared with the wall clock ``now``,
    ``time.time()`` by default: an HTTP date is wall-clock time by nature).  Negative waits
    become 0; unparseable values are ignored.
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms)
        except ValueError:
            pass
        else:
            if math.isfinite(value):
                return max(0.0, value / 1000.0)
    ra = headers.get("retry-after")
    if ra is None:
        return None
    ra = ra.strip()
    try:
        value = float(ra)
    except ValueError:
        pass
    else:
        return max(0.0, value) if math.isfinite(value) else None
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def parse_should_retry(headers: Mapping[str, str]) -> bool | None:
    """``x-should-retry: true|false`` as a bool, ``None`` when absent or unrecognised."""
    value = headers.get("x-should-retry")
    if value is None:
        return None
    value = value.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None
