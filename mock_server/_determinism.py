"""Deterministic draws: every random-looking choice of the mock is a hash.

A draw is ``sha256("seed|part|part|...")`` read as a 64-bit integer and scaled to
[0, 1).  It depends only on its inputs (never on Python's per-process ``hash``
randomisation, the arrival order or the concurrency).
"""

from __future__ import annotations

import hashlib

__all__ = ["body_key", "digest", "unit"]

_SCALE = float(1 << 64)


def digest(seed: int, *parts: object) -> bytes:
    """SHA-256 of the seed and the parts, joined with ``\\x1f``."""
    text = "\x1f".join([str(seed), *(str(part) for part in parts)])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def unit(seed: int, *parts: object) -> float:
    """A uniform-looking number in [0, 1) determined by the seed and the parts."""
    return int.from_bytes(digest(seed, *parts)[:8], "big") / _SCALE


def body_key(body: bytes) -> str:
    """The request key of a request without ``Idempotency-Key``: a hash of its raw body."""
    return "body-" + hashlib.sha256(body).hexdigest()[:32]
