"""The client a ``batch`` or ``speed-test`` run will use, checked before anything is written.

Every check that can refuse the client (no key, a base URL without a scheme, network
options that contradict each other, a CA bundle that does not load...) runs here, before
the output's lock, manifest or output file exists, and its message speaks the command
line's words (``PARADIGM_API_KEY``, ``--base-url``), not ``Client()``'s.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import paradigm_trio as pt

from ._network import network_options

__all__ = ["ClientRefused", "check_client", "cli_words"]

KEY_ENV = "PARADIGM_API_KEY"

_LIBRARY_WORDS = (
    ("set it with base_url=... or", "set it with --base-url or"),
    ("pass api_key=... to Client() or set", "set"),
    ("proxy=", "--proxy"),
)


class ClientRefused(Exception):
    """No client can be made of these arguments; ``str()`` says why, in the CLI's words."""


def cli_words(message: str) -> str:
    """A library message about ``Client()``'s arguments, in the command line's words."""
    for library, cli in _LIBRARY_WORDS:
        message = message.replace(library, cli)
    return message


def check_client(args: argparse.Namespace) -> dict[str, Any]:
    """The network keywords of ``Client``, once the client they make has been checked.

    Without ``--mock``: the key (``$PARADIGM_API_KEY``) and the base URL (``--base-url``,
    else ``$PARADIGM_BASE_URL``) with them.  Builds a client (which opens nothing) and
    drops it.  Raises :class:`ClientRefused`.
    """
    try:
        network = network_options(args)
        if not args.mock:
            if not os.environ.get(KEY_ENV):
                raise ClientRefused(
                    f"no API key: set the {KEY_ENV} environment variable "
                    "(or try the embedded mock server with --mock)"
                )
            model = {"model": args.model} if getattr(args, "model", None) else {}
            pt.Client(base_url=args.base_url, **model, **network)
    except pt.ConfigurationError as exc:
        raise ClientRefused(cli_words(str(exc))) from None
    return network
