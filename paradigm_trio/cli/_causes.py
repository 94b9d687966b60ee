"""Why ``batch``'s requests failed: the output's failures grouped by status and code.

The summary prints one line per group (count, status, code, one example message), and
says the fix instead of "rerun with --retry-failed" when every failure is one
configuration error (a wrong key, base URL or model), which a rerun alone cannot cure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import paradigm_trio as pt

from ._text import loads

__all__ = ["EXIT_STOPPED", "configuration_fix", "failure_groups", "stopped_line"]

EXIT_STOPPED = 3
"""``batch``'s exit code when the run stopped early on a systematic configuration failure."""

EXAMPLE_LENGTH = 200


def failure_groups(path: Path) -> list[dict[str, Any]]:
    """The failed records of the output file, grouped by HTTP status and error code, most
    frequent first: ``{"status", "code", "count", "example"}`` each (``status`` is
    ``None`` without a response; ``example``, the first message, cut at 200 characters)."""
    groups: dict[tuple[int | None, str], dict[str, Any]] = {}
    with path.open("rb") as f:
        for line in f:
            try:
                record = loads(line)
                error = record.get("error")
            except (ValueError, AttributeError):
                continue
            if not isinstance(error, dict):
                continue
            response = record.get("response")
            status = response.get("status_code") if isinstance(response, dict) else None
            code = str(error.get("code"))
            group = groups.setdefault(
                (status if isinstance(status, int) else None, code),
                {"status": status, "code": code, "count": 0,
                 "example": str(error.get("message", ""))[:EXAMPLE_LENGTH]},
            )  # fmt: skip
            group["count"] += 1
    return sorted(groups.values(), key=lambda g: -g["count"])


def configuration_fix(groups: list[dict[str, Any]]) -> str | None:
    """The fix (:func:`paradigm_trio.diagnose`'s, in the CLI's words) when every failure
    is the same configuration error, else ``None``."""
    status = groups[0]["status"] if len(groups) == 1 else None
    diagnosis = pt.diagnose(status) if isinstance(status, int) else None
    return None if diagnosis is None else diagnosis.cli_fix


def stopped_line(exc: pt.SystematicFailureError) -> str:
    """The one line that says why a run stopped early, and the fix, in the CLI's words."""
    status = exc.status if exc.status is not None else exc.cause
    return (
        f"stopped after {exc.sent} request(s): the first {exc.failures} answers were all "
        f"{status} ({exc.diagnosis.meaning}); "
        f"{exc.diagnosis.cli_fix}. Nothing was written for the lines not sent: rerun "
        "the same command after the fix to send them."
    )
