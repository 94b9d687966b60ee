"""``paradigm-trio doctor``: check the way to the API, step by step.

Finds the proxy a request would take, looks up the host name (the server's, or the
proxy's), opens the connection (TCP, TLS to the proxy, ``CONNECT``, TLS to the server),
then calls ``GET /models`` with the key, printing each
step with what failed and how to fix it.  Exit code 0 when every step passed, 1 when one
failed, 2 for contradictory options.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

import trio

import paradigm_trio as pt

from ._network import network_options


def run_doctor(args: argparse.Namespace) -> int:
    try:
        options = network_options(args)
    except pt.ConfigurationError as exc:
        print(f"paradigm-trio doctor: {exc}", file=sys.stderr)
        return 2
    timeouts = pt.Timeouts(connect=args.timeout, read=args.timeout, attempt=2 * args.timeout)
    check = partial(pt.check_connection, base_url=args.base_url, timeouts=timeouts, **options)
    try:
        result = trio.run(check)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(result)
    return 0 if result.ok else 1
