"""``batch --shard I/N`` and ``--redis URL``: one batch run by several workers.

A shard owns the input lines whose ``custom_id`` hashes to it: the first 8 bytes of the
id's SHA-256 (UTF-8), read big-endian, modulo ``N``.  The same on every machine and every
Python, so workers agree without talking.  As a Kubernetes Indexed Job, ``--shard``
defaults to ``$JOB_COMPLETION_INDEX/$JOB_COMPLETIONS`` (set ``JOB_COMPLETIONS`` in the
pod's environment: Kubernetes sets only the index).

``--redis URL`` (or ``$PARADIGM_REDIS_URL``) makes ``--rpm`` and ``--tpm`` one quota for
every run that uses the same Redis and ``--redis-name``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import paradigm_trio as pt

from ._batchfile import InputLine, read_input

__all__ = [
    "REDIS_ENV",
    "Shard",
    "add_worker_arguments",
    "check_worker_args",
    "shard_of",
    "shard_total",
    "sharded",
]

REDIS_ENV = "PARADIGM_REDIS_URL"
INDEX_ENV = "JOB_COMPLETION_INDEX"
COUNT_ENV = "JOB_COMPLETIONS"

T = TypeVar("T", bound=InputLine)


def shard_of(custom_id: str, count: int) -> int:
    """The shard, out of ``count``, that owns ``custom_id`` (stable everywhere)."""
    # ``surrogatepass``: an id holding a lone surrogate (a ``\\ud800`` escape in the input)
    # has a shard too (the same bytes as UTF-8 for every other id).
    digest = hashlib.sha256(custom_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (``0 <= index < count``)."""

    index: int
    count: int

    def owns(self, custom_id: str) -> bool:
        return shard_of(custom_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"``; raises :class:`ValueError` with a message for the user."""
        index, sep, count = text.partition("/")
        try:
            shard = cls(int(index), int(count))
        except ValueError:
            raise ValueError(f"expected I/N (e.g. 0/4), got {text!r}") from None
        if not sep or shard.count < 1 or not 0 <= shard.index < shard.count:
            raise ValueError(f"expected I/N with 0 <= I < N, got {text!r}")
        return shard


def _shard_argument(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_worker_arguments(batch: argparse.ArgumentParser) -> None:
    """``batch`` options for sharded runs and a shared quota."""
    batch.add_argument(
        "--shard",
        type=_shard_argument,
        metavar="I/N",
        help=f"send only the lines whose custom_id hashes to shard I of N (0-based; default "
        f"${INDEX_ENV}/${COUNT_ENV} when both are set, as in a Kubernetes Indexed Job)",
    )
    batch.add_argument(
        "--redis",
        metavar="URL",
        help=f"share --rpm/--tpm with every run using this Redis (redis://host:6379/0; "
        f"default ${REDIS_ENV})",
    )
    batch.add_argument(
        "--redis-name",
        metavar="NAME",
        default="paradigm-trio",
        help="the shared quota's name: one per API key (default paradigm-trio)",
    )


def check_worker_args(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> None:
    """Set ``args.shard`` (from the environment when not given) and ``args.shared`` (the
    :class:`~paradigm_trio.RedisQuota` or ``None``); ``ValueError`` says what is wrong."""
    url = args.redis or environ.get(REDIS_ENV)
    try:
        args.shared = pt.RedisQuota(url, name=args.redis_name) if url else None
    except ValueError as exc:
        raise ValueError(f"--redis: {exc}") from None
    if args.shard is not None:
        return
    index, count = environ.get(INDEX_ENV), environ.get(COUNT_ENV)
    if index is None:
        return
    if count is None:
        raise ValueError(
            f"${INDEX_ENV} is set ({index}) but ${COUNT_ENV} is not: set it to the Job's "
            "completions, or pass --shard I/N"
        )
    try:
        args.shard = Shard.parse(f"{index}/{count}")
    except ValueError as exc:
        raise ValueError(f"${INDEX_ENV}/${COUNT_ENV}: {exc}") from None


def sharded(lines: Iterable[T], shard: Shard | None) -> Iterator[T]:
    """The lines of ``shard`` (all of them without one)."""
    for item in lines:
        if shard is None or shard.owns(item.custom_id):
            yield item


def shard_total(path: Path, shard: Shard) -> int:
    """How many lines of the input the shard owns."""
    return sum(1 for _ in sharded(read_input(path), shard))
