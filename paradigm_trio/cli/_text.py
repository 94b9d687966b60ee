"""What the command writes, made safe in one place: records, reports, logs, the lock file
and the manifest.

Text from a server or an input file may hold what a file cannot: a lone surrogate (a
``\\ud800`` escape in JSON reads back as one), which UTF-8 cannot encode; ``NaN`` or
``Infinity``, which strict JSON has no token for; and a crash half-way through a write
leaves a truncated file.  So:

* :func:`safe` writes each lone surrogate as its escape ``\\udXXX`` (in JSON text it can
  only stand inside a string, where that escape reads back as the same string);
* :func:`dumps` is strict JSON (``allow_nan=False``: a non-finite number is a
  ``ValueError`` at the write, never a file no parser reads), made :func:`safe`;
* :func:`write_atomic` writes a whole file through a temporary file renamed over it, so a
  reader (or a crash) sees the old file or the new one, never a part;
* :func:`loads` is the library's :func:`paradigm_trio.parse_json` (depth limit, finite
  numbers), for every JSON the command reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import paradigm_trio as pt

from ._atomic import replacing

__all__ = ["dumps", "loads", "safe", "write_atomic"]

loads = pt.parse_json


def safe(text: str) -> str:
    """``text`` with each lone surrogate written as its escape ``\\udXXX``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def dumps(value: Any, **options: Any) -> str:
    """``value`` as strict JSON text (no ``NaN``/``Infinity``: ``ValueError``), non-ASCII
    kept as is, lone surrogates escaped; ``options`` as ``json.dumps``'s."""
    return safe(json.dumps(value, ensure_ascii=False, allow_nan=False, **options))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (made :func:`safe`) to ``path`` as UTF-8, atomically."""
    data = safe(text).encode("utf-8")
    with replacing(path, create=True) as out:
        out.write(data)
