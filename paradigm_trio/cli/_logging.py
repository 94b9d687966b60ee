"""``-v`` / ``--log-format``: the library's log messages on stderr, as text or JSON lines.

The messages and their ``extra`` fields are the ``paradigm_trio`` logger's (see the
reference, "Logging"); the command only chooses a level and a format.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
from typing import IO, Any

from ._text import safe

__all__ = ["JSONFormatter", "add_logging_arguments", "configure_logging"]

LOGGER = "paradigm_trio"

# What every LogRecord has: anything else on a record is an ``extra`` field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JSONFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, then the record's ``extra`` fields (``event``, ``custom_id``, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in data:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return safe(json.dumps(data, default=str, ensure_ascii=False))


class _LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """On a terminal, clears the redrawn progress line before writing a message."""

    def format(self, record: logging.LogRecord) -> str:
        text = safe(super().format(record))
        isatty = getattr(self.stream, "isatty", None)
        return "\r\x1b[K" + text if isatty is not None and isatty() else text


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log the library's messages on stderr: -v for INFO (a batch's story), "
        "-vv for DEBUG (every attempt)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="with -v: text lines (default) or one JSON object a line, with the messages' "
        "fields (event, custom_id, attempt, cause, wait, ...)",
    )


def configure_logging(args: argparse.Namespace, stream: IO[str]) -> logging.Handler | None:
    """Send the ``paradigm_trio`` logger to ``stream`` per ``-v``; the handler added, if any
    (remove it with :func:`logging.Logger.removeHandler` when done)."""
    verbose = getattr(args, "verbose", 0)
    if not verbose:
        return None
    handler = _LineHandler(stream)
    if args.log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
    logger.addHandler(handler)
    return handler
