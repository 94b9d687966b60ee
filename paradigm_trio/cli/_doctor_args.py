"""The arguments of ``paradigm-trio doctor`` (kept apart from its run, which imports trio)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ._network import add_network_arguments

HELP = "check the connection to the API step by step (proxy, TLS, key)"
DESCRIPTION = (
    "Resolve the proxy a request would take, open the connection (TCP, TLS, the proxy's "
    "CONNECT), call GET /models with the key, and print each step with what failed and how "
    "to fix it. Exit code 0 if every step passed, else 1."
)


def add_doctor_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    seconds: Callable[[str], float],
) -> None:
    """Add the ``doctor`` subcommand to ``sub`` (``seconds`` parses ``--timeout``)."""
    doctor = sub.add_parser("doctor", help=HELP, description=DESCRIPTION)
    doctor.add_argument("--base-url", metavar="URL", help="the API root (else PARADIGM_BASE_URL)")
    doctor.add_argument("--timeout", type=seconds, default=10.0, metavar="S",
                        help="seconds each network step may take (default 10)")  # fmt: skip
    add_network_arguments(doctor, mock=False)
