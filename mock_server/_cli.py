"""Process mode: ``python -m mock_server`` (and ``paradigm-trio mock``)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from ._config import MockConfig
from ._faults import FAULT_KINDS, Fault
from ._server import serve
from ._tls import TLSFiles, throwaway_ca

__all__ = ["build_parser", "config_from_args", "main"]

#: Environment variable read when ``--api-key`` is not given.
API_KEY_ENV = "MOCK_API_KEY"
#: Environment variable read when ``--admin-token`` is not given.
ADMIN_TOKEN_ENV = "MOCK_ADMIN_TOKEN"


def build_parser(prog: str = "python -m mock_server") -> argparse.ArgumentParser:
    """The argument parser of ``python -m mock_server`` (``prog`` names it in usage lines)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Fault-injecting mock of the Paradigm (OpenAI-compatible) chat completions "
        "API. Prints 'Mock Paradigm API listening on URL' once bound; stops on SIGINT/SIGTERM.",
    )
    add = parser.add_argument
    add(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default: %(default)s); beyond loopback the admin routes "
        "always need an admin token (one is generated and printed if none is given)",
    )
    add("--port", type=int, default=8000, help="port to bind, 0 = any free (default: 8000)")
    add("--config", metavar="FILE", help="TOML or JSON file of MockConfig fields (flags override)")
    add("--seed", type=int, help="seed of every deterministic choice (default 0)")
    add("--latency", help="fixed:S | uniform:LOW,HIGH | lognormal:MEDIAN,SIGMA[,CAP] (default 0)")
    add("--ttft", help="streaming: extra delay before the first chunk (same syntax as --latency)")
    add("--token-delay", type=float, metavar="S", help="streaming: seconds between chunks")
    add("--load-latency", type=float, metavar="S", help="seconds added per request in flight")
    add(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=P",
        help=f"fault probability, repeatable; KIND in {', '.join(FAULT_KINDS)}; a stream "
        "fault may say where it strikes: KIND@N=P (N events sent first, as --fault-at), "
        "stream_stall@N+S=P (silent S seconds, as --stall-for); or straggler=SHARE:FACTORx "
        "(e.g. 0.02:10x: 2 %% of attempts 10 times slower)",
    )
    add(
        "--fault-at",
        type=int,
        metavar="N",
        help="SSE events a stream fault sends before it strikes (default: half the stream)",
    )
    add(
        "--stall-for",
        type=float,
        metavar="S",
        help="seconds a stream_stall stays silent before the rest (default: for good)",
    )
    add(
        "--stall-after",
        type=int,
        metavar="N",
        help="chunks a stream_stall fault sends before it stalls (default: half the stream)",
    )
    add("--retry-after", type=float, metavar="S", help="Retry-After of rate_limit faults")
    add("--rpm", type=int, help="requests-per-minute quota")
    add("--tpm", type=int, help="tokens-per-minute quota")
    add(
        "--api-key",
        help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV} if set)",
    )
    add(
        "--admin-token",
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' or 'X-Mock-Admin-Token: TOKEN' on the "
        f"/_mock/* admin routes (default: ${ADMIN_TOKEN_ENV} if set; prefer it, a flag is "
        "visible to other users in the process list)",
    )
    _add_tls_arguments(parser)
    add("--models", metavar="A,B", help="accepted models (default: any model)")
    add("--max-body-bytes", type=int, metavar="N", help="largest accepted body (default 1 MiB)")
    add(
        "--max-file-bytes",
        type=int,
        metavar="N",
        help="largest accepted file upload, 0 for no limit (default 25 MiB)",
    )
    add(
        "--file-processing-time",
        type=float,
        metavar="S",
        help="seconds an uploaded file stays 'pending' before 'embedded' (default 1)",
    )
    add(
        "--embeddings-strings-only",
        action="store_const",
        const=True,
        help="refuse an embeddings 'input' that is a list (400), as a server that takes "
        "one string per request would",
    )
    return parser


def _add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """HTTPS: certificate files, or a throwaway CA; client certificates (mutual TLS)."""
    tls = parser.add_argument_group("HTTPS (to rehearse a private-CA deployment)")
    tls.add_argument("--certfile", metavar="PEM", help="serve HTTPS with this certificate chain")
    tls.add_argument("--keyfile", metavar="PEM", help="the private key of --certfile")
    tls.add_argument(
        "--throwaway-ca",
        nargs="?",
        const="",
        metavar="DIR",
        help="serve HTTPS with a certificate from a new CA made now (trustme), written to DIR "
        "(default: a temporary folder removed on exit); prints the CA's path on stderr",
    )
    tls.add_argument(
        "--tls-name",
        action="append",
        default=[],
        metavar="NAME",
        help="with --throwaway-ca: another host name for the certificate, repeatable "
        "(it always holds localhost, 127.0.0.1, ::1 and --host)",
    )
    tls.add_argument(
        "--client-ca",
        metavar="PEM",
        help="require a client certificate signed by this CA (mutual TLS; with "
        "--throwaway-ca, use --require-client-cert instead)",
    )
    tls.add_argument(
        "--require-client-cert",
        action="store_true",
        help="with --throwaway-ca: require a client certificate from the throwaway CA, and "
        "write one as DIR/client.pem",
    )


def tls_from_args(args: argparse.Namespace, folder: str) -> TLSFiles | None:
    """The :class:`TLSFiles` the arguments ask for (``folder``: the throwaway CA's, when
    ``--throwaway-ca`` names none), or ``None`` for plain HTTP.

    Raises:
        ValueError: conflicting or incomplete options, or files that cannot be loaded.
    """
    if args.throwaway_ca is not None:
        if args.certfile or args.keyfile or args.client_ca:
            raise ValueError("--throwaway-ca makes its own files: not with --certfile, "
                             "--keyfile or --client-ca")  # fmt: skip
        names = dict.fromkeys(["localhost", "127.0.0.1", "::1", args.host, *args.tls_name])
        return throwaway_ca(
            args.throwaway_ca or folder,
            [n.strip("[]") for n in names if n and n not in ("0.0.0.0", "::")],
            client_certificates=args.require_client_cert,
        )
    if args.require_client_cert or args.tls_name:
        raise ValueError("--require-client-cert and --tls-name go with --throwaway-ca")
    if bool(args.certfile) != bool(args.keyfile):
        raise ValueError("HTTPS needs both --certfile and --keyfile")
    if not args.certfile:
        if args.client_ca:
            raise ValueError("--client-ca needs HTTPS: --certfile and --keyfile")
        return None
    tls = TLSFiles(certfile=args.certfile, keyfile=args.keyfile, client_ca=args.client_ca)
    tls.check()
    return tls


def _print_tls(tls: TLSFiles) -> None:
    """On stderr: which CA to trust, and the client certificate to present."""
    lines = []
    if tls.ca is not None:
        lines.append(
            f"throwaway CA: {tls.ca} (trust it: SSL_CERT_FILE={tls.ca}, "
            f"--ca-bundle {tls.ca}, or verify={tls.ca!r})"
        )
    if tls.client_cert is not None:
        lines.append(
            f"client certificate required; one is in {tls.client_cert} "
            f"(--client-cert {tls.client_cert}, or cert={tls.client_cert!r})"
        )
    for line in lines:
        print(f"mock_server: {line}", file=sys.stderr, flush=True)


def _load_file(path: str) -> dict[str, Any]:
    file = Path(path)
    raw = file.read_bytes()
    suffix = file.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(raw)
        elif suffix == ".toml":
            data = tomllib.loads(raw.decode())
        else:
            try:
                data = json.loads(raw)
            except ValueError:
                data = tomllib.loads(raw.decode())
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"--config {path}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a table/object of MockConfig fields")
    return data


def config_from_args(args: argparse.Namespace) -> MockConfig:
    """The :class:`MockConfig` described by parsed arguments (file, then env, then flags)."""
    data: dict[str, Any] = _load_file(args.config) if args.config else {}
    for env, name in ((API_KEY_ENV, "api_key"), (ADMIN_TOKEN_ENV, "admin_token")):
        value = os.environ.get(env)
        if value:
            data[name] = value
    for flag, name in (
        ("seed", "seed"),
        ("latency", "latency"),
        ("ttft", "ttft"),
        ("token_delay", "token_delay"),
        ("load_latency", "load_latency"),
        ("retry_after", "retry_after"),
        ("rpm", "rpm"),
        ("tpm", "tpm"),
        ("api_key", "api_key"),
        ("admin_token", "admin_token"),
        ("models", "models"),
        ("max_body_bytes", "max_body_bytes"),
        ("stall_after", "stall_after"),
        ("fault_at", "fault_at"),
        ("stall_for", "stall_for"),
        ("file_processing_time", "file_processing_time"),
        ("embeddings_strings_only", "embeddings_strings_only"),
    ):
        value = getattr(args, flag)
        if value is not None:
            data[name] = value
    if args.max_file_bytes is not None:
        data["max_file_bytes"] = args.max_file_bytes or None
    if args.fault:
        data["faults"] = dict(data.get("faults") or {})
        for item in args.fault:
            _add_fault(data, item)
    return MockConfig.from_mapping(data)


def _add_fault(data: dict[str, Any], item: str) -> None:
    """Put ``--fault KIND[@N[+S]]=P`` into ``data`` (the rate, and where it strikes)."""
    spec, sep, rate = item.partition("=")
    kind = spec.partition("@")[0].strip()
    if sep and spec.strip() == "straggler":
        data["faults"][kind] = rate.strip()  # SHARE:FACTORx, parsed by MockConfig
        return
    if not sep or kind not in FAULT_KINDS:
        raise ValueError(
            f"--fault {item!r}: expected KIND=P with KIND in {', '.join(FAULT_KINDS)}, "
            "or straggler=SHARE:FACTORx"
        )
    try:
        data["faults"][kind] = float(rate)
    except ValueError:
        raise ValueError(f"--fault {item!r}: {rate!r} is not a number") from None
    try:
        fault = Fault.parse(spec.strip())
    except ValueError as exc:
        raise ValueError(f"--fault {item!r}: {exc}") from None
    for name, value in (("fault_at", fault.at), ("stall_for", fault.stall_for)):
        if value is None:
            continue
        if data.get(name, value) != value:
            raise ValueError(
                f"--fault {item!r}: {name} is {data[name]} already (one value for every fault)"
            )
        data[name] = value


def _warn_beyond_loopback(host: str, config: MockConfig, token: str | None) -> None:
    """On stderr: the mock is reachable from other machines; a generated admin token."""
    api = (
        "its API needs the API key"
        if config.api_key is not None
        else f"its API needs NO key (set --api-key or ${API_KEY_ENV})"
    )
    print(
        f"mock_server: warning: listening on {host}, beyond loopback: other machines can "
        f"reach the mock; {api}; its /_mock/* admin routes need the admin token.",
        file=sys.stderr,
        flush=True,
    )
    if config.admin_token is None and token is not None:
        print(
            f"mock_server: admin token: {token} (generated; send 'Authorization: Bearer "
            f"TOKEN' or 'X-Mock-Admin-Token: TOKEN'; choose one with ${ADMIN_TOKEN_ENV})",
            file=sys.stderr,
            flush=True,
        )


async def _serve_until_signal(
    config: MockConfig, host: str, port: int, tls: TLSFiles | None = None
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with serve(config, host=host, port=port, tls=tls) as server:
            if tls is not None:
                _print_tls(tls)
            if server.state.admin_token_required:
                _warn_beyond_loopback(host, config, server.admin_token)
            print(f"Mock Paradigm API listening on {server.url}", flush=True)
            async for _ in signals:
                break


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m mock_server") -> int:
    """Run the mock server as a process; return the exit status (0, or 2 on bad config)."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error (or --help)
        return exc.code if isinstance(exc.code, int) else 2
    with tempfile.TemporaryDirectory(prefix="mock-ca-") as folder:
        try:
            config = config_from_args(args)
            if not 0 <= args.port <= 65535:
                raise ValueError(f"--port: expected 0..65535, got {args.port}")
            tls = tls_from_args(args, folder)
        except (ValueError, OSError) as exc:
            print(f"mock_server: error: {exc}", file=sys.stderr)
            return 2
        return _run(config, args, tls)


def _run(config: MockConfig, args: argparse.Namespace, tls: TLSFiles | None) -> int:
    try:
        trio.run(_serve_until_signal, config, args.host, args.port, tls)
    except Exception as exc:
        error = _find_os_error(exc)
        if error is None:
            raise
        print(
            f"mock_server: error: cannot serve on {args.host}:{args.port}: {error}",
            file=sys.stderr,
        )
        return 1
    return 0


def _find_os_error(exc: BaseException) -> OSError | None:
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find_os_error(inner)
            if found is not None:
                return found
    return None
