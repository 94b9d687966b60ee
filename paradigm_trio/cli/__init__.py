"""The ``paradigm-trio`` command line: ``batch``, ``merge``, ``quota-status``, ``report``,
``doctor``, ``speed-test`` and ``mock``.

Exit codes: 0 everything succeeded, 1 some requests failed, 2 bad usage, unusable input
or output paths, or an output in use by another run, 3 (``batch``) stopped early because
its first answers were all one configuration failure (a wrong key or URL), 130
interrupted (Ctrl-C; rerun the same command to resume).  A closed stdout or stderr
changes none of it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__
from ._doctor_args import add_doctor_parser
from ._extras import MOCK_EXTRA, install_hint
from ._logging import add_logging_arguments
from ._merge import add_merge_parser, run_merge
from ._network import add_network_arguments
from ._quota_status import add_quota_status_parser, run_quota_status
from ._report import add_report_parser
from ._shard import add_worker_arguments
from ._streams import tolerant_std_streams
from ._suggest import SuggestingParser
from ._upload import add_upload_parser

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_INTERRUPTED = 130

DEFAULT_CONCURRENCY = 64
"""``--concurrency``'s default for ``batch`` and ``speed-test``: ``Limits.concurrency``'s
(a test keeps them equal; the parser is built without importing the library)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def build_parser() -> SuggestingParser:
    parser = SuggestingParser(
        prog="paradigm-trio",
        description=(
            "Batch chat completions against LightOn's Paradigm API (or any OpenAI-compatible "
            "API), with retries, rate limits and resume; or run the bundled mock server."
        ),
        epilog=(
            "The API key is read from PARADIGM_API_KEY and the URL from PARADIGM_BASE_URL "
            "(default https://paradigm.lighton.ai/api/v2). --mock needs neither."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # (Subparsers are of the parser's class: SuggestingParser.)
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(  # type: ignore[assignment]
        dest="command", metavar="COMMAND", required=True
    )
    _add_batch_parser(sub)
    add_merge_parser(sub)
    add_quota_status_parser(sub)
    add_report_parser(sub)
    _add_speed_test_parser(sub)
    add_upload_parser(sub)
    add_doctor_parser(sub, _positive_float)
    _add_mock_parser(sub)
    return parser


def _add_batch_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``batch`` subcommand: files, then throughput and retry limits, then run options."""
    batch = sub.add_parser(
        "batch",
        help="run a JSONL file of requests, resumably",
        description=(
            "Send every request of a JSONL file (OpenAI Batch input format, or short lines "
            '{"custom_id", "messages", ...}) and append one result per line to the output '
            "(OpenAI Batch output format, plus attempts and elapsed), in completion order. "
            "Rerun the same command after a crash or Ctrl-C to resume."
        ),
        epilog=(
            "Before sending anything, it checks every path it will write (output, manifest, "
            "lock file, report: folder exists and is writable, no directory in place of a "
            "file; -o - is refused) and that the input is a JSONL file (a directory, binary "
            "data or a first line that is not a JSON object is refused). Only one run at a "
            "time may use an output: a run holds an exclusive lock (flock on OUT.jsonl.lock) "
            "until it ends; another run on the same output exits with code 2, saying which "
            "process holds it, unless --wait-for-lock. Exit codes: 0 every record is a "
            "success, 1 some record is an error, 2 refused (nothing sent, no file created), "
            "3 stopped early: the first answers were all the same configuration failure "
            "(wrong key, URL or model; no record for the lines not sent), 130 interrupted. "
            "A closed stdout or stderr (| head -1) changes none of this."
        ),
    )
    batch.add_argument("input", metavar="IN.jsonl", help="the requests, one JSON object a line")
    batch.add_argument(
        "-o",
        "--output",
        metavar="OUT.jsonl",
        help="where results are appended (and read back on resume); a file, not -; "
        "required unless --dry-run",
    )
    batch.add_argument(
        "--dry-run",
        action="store_true",
        help="count every line's prompt tokens with the server's tokenizer (POST /tokenize, "
        "under --concurrency and --count-rpm) and print the totals, the largest requests, "
        "the lines over the context and the time the batch takes under --rpm/--tpm; send "
        "nothing else, write nothing",
    )
    batch.add_argument(
        "--count-rpm",
        type=_positive_float,
        metavar="N",
        help="with --dry-run, at most N /tokenize requests a minute (default: only "
        "--concurrency bounds them; --rpm and --tpm are the real run's, for the estimate)",
    )
    batch.add_argument(
        "--context-length",
        type=_positive_int,
        metavar="N",
        help="with --dry-run, the model's context in tokens (else the model list's "
        "max_model_len, when it gives one)",
    )
    _add_batch_limit_arguments(batch)
    _add_batch_run_arguments(batch)
    add_network_arguments(batch)
    add_worker_arguments(batch)


def _add_batch_limit_arguments(batch: argparse.ArgumentParser) -> None:
    """``batch`` options for concurrency, rate limits, model, timeout and attempts."""
    batch.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"requests in flight at once (default {DEFAULT_CONCURRENCY})",
    )
    batch.add_argument(
        "--rpm", type=_positive_float, metavar="N", help="at most N requests a minute"
    )
    batch.add_argument(
        "--tpm",
        type=_positive_float,
        metavar="N",
        help="at most N tokens a minute (prompt estimate + max_tokens)",
    )
    batch.add_argument("--model", metavar="M", help="model for lines that name none")
    batch.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="S",
        help="seconds one attempt may take (default 180)",
    )
    batch.add_argument(
        "--max-attempts",
        type=_positive_int,
        metavar="N",
        help="attempts per request, the first included (default 4)",
    )
    batch.add_argument(
        "--dedupe",
        choices=("auto", "all", "off"),
        default="auto",
        help="identical lines (the same body, custom_id aside) sent once, each line its own "
        "record sharing the answer: auto (default) for deterministic requests only "
        "(temperature 0 or a seed; every embeddings line), all for every identical request, "
        "off to send every line",
    )
    batch.add_argument(
        "--hedge",
        action="store_true",
        help="hedge chat and embeddings lines still unanswered after the batch's 95th "
        "percentile latency: "
        "send one copy when a slot is free, keep the first answer (at most 5 %% more "
        "requests, none while the server sheds load)",
    )
    batch.add_argument(
        "--cache",
        metavar="PATH",
        help="a response cache (SQLite file, made if missing; several runs may share it): "
        "deterministic lines whose answer it holds are not sent, and successful answers "
        "are stored (never the key)",
    )


def _add_batch_run_arguments(batch: argparse.ArgumentParser) -> None:
    """``batch`` options for resume, validation, report, server and output."""
    batch.add_argument(
        "--retry-failed",
        action="store_true",
        help="on resume, run the requests that failed before again",
    )
    batch.add_argument(
        "--strict",
        action="store_true",
        help="refuse the whole file, sending nothing, if any line is invalid",
    )
    batch.add_argument(
        "--report",
        metavar="REPORT",
        help="at the end, write the summary as JSON; with a name ending in .html, the HTML "
        "report of the output file instead (needs the report extra)",
    )
    batch.add_argument(
        "--wait-for-lock",
        action="store_true",
        help="if another run is using the output, wait for it to end instead of exiting",
    )
    batch.add_argument(
        "--lock-timeout",
        type=_seconds,
        metavar="S",
        help="wait for the output's lock at most S seconds, then exit with code 2 "
        "(implies --wait-for-lock)",
    )
    batch.add_argument(
        "--mock",
        action="store_true",
        help="run against an embedded mock server (no key, no network)",
    )
    batch.add_argument("--base-url", metavar="URL", help="the API root (else PARADIGM_BASE_URL)")
    batch.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_logging_arguments(batch)


def _add_speed_test_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``speed-test`` subcommand."""
    speed = sub.add_parser(
        "speed-test",
        help="sequential vs concurrent: the improvement factor",
        description=(
            "Send the same welcome prompts one by one, then concurrently, and report both "
            "times, the improvement factor and the ideal factor for the observed latency."
        ),
        epilog=(
            "Exit codes: 0 every request succeeded, 1 some failed, 2 no API key (without "
            "--mock), 130 interrupted. A closed stdout or stderr (| head -1) changes neither "
            "the run nor the exit code."
        ),
    )
    speed.add_argument(
        "--mock",
        action="store_true",
        help="run against an embedded mock with ~0.5 s latency (no key, no network)",
    )
    speed.add_argument(
        "-n", type=_positive_int, default=20, metavar="N", help="number of prompts (default 20)"
    )
    speed.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"requests in flight at once in the concurrent run (default {DEFAULT_CONCURRENCY})",
    )
    speed.add_argument("--model", metavar="M", default=None, help="model (default alfred-4.2)")
    speed.add_argument("--base-url", metavar="URL", help="the API root (else PARADIGM_BASE_URL)")
    speed.add_argument("--seed", type=int, default=0, help="mock seed (with --mock)")
    speed.add_argument("--no-replies", action="store_true", help="do not print the replies")
    add_network_arguments(speed)


def _add_mock_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``mock`` subcommand: a placeholder for the help; main() hands its arguments on."""
    sub.add_parser(
        "mock",
        help="run the mock Paradigm API server (see 'paradigm-trio mock --help')",
        add_help=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    ``batch`` and ``speed-test`` run with stdout and stderr that a closed pipe cannot
    break (``_streams``): what they do does not depend on whether anyone reads them.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["mock"]:
        return _run_mock(args_list[1:])
    parser = build_parser()
    args, extras = parser.parse_known_args(args_list)
    if extras:
        (parser.subparser(args.command) or parser).refuse_unknown(extras)
    args.command_line = args_list
    with tolerant_std_streams():
        if args.command == "batch" and args.dry_run:
            from ._dry_run import run_dry_run

            return run_dry_run(args)
        if args.command == "batch":
            if args.output is None:
                parser.error("batch: -o/--output is required (except with --dry-run)")
            from ._run_batch import run_batch

            return run_batch(args)
        if args.command == "upload":
            from ._upload import run_upload

            return run_upload(args)
        if args.command == "merge":
            return run_merge(args)
        if args.command == "quota-status":
            return run_quota_status(args)
        if args.command == "report":
            from ._report import run_report

            return run_report(args)
        if args.command == "doctor":
            from ._doctor import run_doctor

            return run_doctor(args)
        from ._speedtest import run_speed_test

        return run_speed_test(args)


def _run_mock(argv: list[str]) -> int:
    """``paradigm-trio mock``: the mock server's own command line."""
    try:
        import mock_server
    except ImportError as exc:
        print(
            f"paradigm-trio mock needs the mock extra ({exc}): {install_hint(*MOCK_EXTRA)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return mock_server.main(argv, prog="paradigm-trio mock")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
