"""``paradigm-trio quota-status``: a shared quota and its live workers, as JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import trio

import paradigm_trio as pt

from ._shard import REDIS_ENV

__all__ = ["add_quota_status_parser", "run_quota_status"]


def add_quota_status_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser(
        "quota-status",
        help="print a shared quota (Redis) and its live workers as JSON",
        description="Read the quota shared by 'batch --redis' runs and print it as JSON.",
    )
    status.add_argument("--redis", metavar="URL", help=f"the Redis (default ${REDIS_ENV})")
    status.add_argument(
        "--redis-name", metavar="NAME", default="paradigm-trio", help="the quota's name"
    )


def run_quota_status(args: argparse.Namespace) -> int:
    url = args.redis or os.environ.get(REDIS_ENV)
    if not url:
        print(f"paradigm-trio quota-status: give --redis URL or set {REDIS_ENV}", file=sys.stderr)
        return 2
    try:
        quota = pt.RedisQuota(url, name=args.redis_name)
        state = trio.run(pt.quota_state, quota)
    except (ValueError, pt.ParadigmError) as exc:
        print(f"paradigm-trio quota-status: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(dataclasses.asdict(state), indent=2))
    return 0
