"""Network options of the commands that talk to a real server: proxy, CAs, client certificate.

``--proxy URL``, ``--no-env-proxy``, ``--ca-bundle PATH``, ``--system-trust-store``,
``--client-cert PATH [--client-key PATH]`` (the key's password from
``$PARADIGM_CLIENT_KEY_PASSWORD``) and ``--insecure``, turned into the ``proxy=``,
``verify=``, ``cert=`` and ``trust_env=`` arguments of :class:`paradigm_trio.Client`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

KEY_PASSWORD_ENV = "PARADIGM_CLIENT_KEY_PASSWORD"


def add_network_arguments(parser: argparse.ArgumentParser, *, mock: bool = True) -> None:
    """Add the network options to ``parser`` (a group of their own in ``--help``);
    ``mock``: whether the command has a ``--mock`` that they do not apply to."""
    title = "network (proxies, private CAs, client certificates"
    group = parser.add_argument_group(f"{title}; not with --mock)" if mock else f"{title})")
    add = group.add_argument
    add(
        "--proxy",
        metavar="URL",
        help="send every request through this proxy (http://user:pass@host:3128); by "
        "default HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY are read",
    )
    add(
        "--no-env-proxy",
        action="store_true",
        help="ignore the proxy environment variables (HTTPS_PROXY, NO_PROXY...)",
    )
    add("--ca-bundle", metavar="PATH", help="trust the CAs of this PEM file (or folder) only")
    add(
        "--system-trust-store",
        action="store_true",
        help="trust the operating system's certificate store (needs paradigm-trio[truststore])",
    )
    add(
        "--client-cert",
        metavar="PATH",
        help="present this client certificate (PEM; with its key unless --client-key)",
    )
    add(
        "--client-key",
        metavar="PATH",
        help=f"the key of --client-cert (its password, if any, from ${KEY_PASSWORD_ENV})",
    )
    add(
        "--insecure",
        action="store_true",
        help="do NOT verify TLS certificates (dangerous: for diagnosis only)",
    )


def network_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Client`` keywords of the network options; ``{}`` with ``--mock``.

    Raises:
        pt.ConfigurationError: options that contradict each other.
    """
    import paradigm_trio as pt  # here: building the parser (--help) needs no trio

    if getattr(args, "mock", False):
        # The embedded mock is on 127.0.0.1: never through a proxy from the environment.
        return {"trust_env": False}
    chosen = [f for f, on in (("--ca-bundle", args.ca_bundle), ("--insecure", args.insecure),
              ("--system-trust-store", args.system_trust_store)) if on]  # fmt: skip
    if len(chosen) > 1:
        raise pt.ConfigurationError(f"{' and '.join(chosen)} contradict each other: choose one")
    if args.client_key and not args.client_cert:
        raise pt.ConfigurationError("--client-key goes with --client-cert")
    options: dict[str, Any] = {}
    if args.proxy:
        options["proxy"] = args.proxy
    if args.no_env_proxy:
        options["trust_env"] = False
        # Only the proxy variables are ignored: a CA from the environment still applies.
        for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
            if os.environ.get(name) and not chosen:
                options["verify"] = os.environ[name]
                break
    if args.ca_bundle:
        options["verify"] = args.ca_bundle
    elif args.system_trust_store:
        options["verify"] = pt.system_trust_store()
    elif args.insecure:
        options["verify"] = False
        print(
            "WARNING: --insecure: TLS certificates are NOT verified. Anyone on the network "
            "path can read and change the traffic, the API key included. Use --ca-bundle "
            "to trust a private CA instead.",
            file=sys.stderr,
        )
    if args.client_cert:
        password = os.environ.get(KEY_PASSWORD_ENV) or None
        key = args.client_key
        options["cert"] = (args.client_cert, key or args.client_cert, password)
    return options
