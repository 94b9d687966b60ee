"""``paradigm-trio merge OUT.* -o ALL.jsonl --input IN.jsonl``: join the outputs of shards.

The merged file has one record per input line, in input order, checked against the input:
a ``custom_id`` of the input that no output holds is *missing*, one that several records
hold is *duplicated* (the merge keeps one, a success before a failure), and a record
whose ``custom_id`` is not in the input is *unexpected* (left out).  Exit code 1 when
anything is missing, duplicated or unexpected, 0 otherwise; 2 for unusable paths.

Memory: the ids of the input and, per record, where it lies in its file (never the
records themselves); the merged file is written whole, then renamed into place.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ._batchfile import InputError, read_input
from ._text import loads

__all__ = ["add_merge_parser", "run_merge"]


def add_merge_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``merge`` subcommand."""
    merge = sub.add_parser(
        "merge",
        help="join the outputs of sharded runs, checked against the input",
        description=(
            "Join the outputs of 'batch --shard' runs into one file with one record per "
            "input line, in input order. Reports the custom_ids missing, duplicated or not "
            "in the input (exit code 1 when there is any)."
        ),
    )
    merge.add_argument("outputs", metavar="OUT.jsonl", nargs="+", help="the shards' outputs")
    merge.add_argument("-o", "--output", metavar="ALL.jsonl", required=True, help="merged file")
    merge.add_argument(
        "--input", metavar="IN.jsonl", required=True, help="the input all shards were run on"
    )


@dataclass(slots=True)
class _Found:
    """Where each record of the outputs lies: (file index, offset, length, ok)."""

    places: dict[str, tuple[int, int, int, bool]] = field(default_factory=dict)
    duplicated: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)

    def add(self, custom_id: str, place: tuple[int, int, int, bool]) -> None:
        known = self.places.get(custom_id)
        if known is not None:
            self.duplicated[custom_id] = self.duplicated.get(custom_id, 1) + 1
            if known[3] or not place[3]:
                return  # keep a success over a failure, else the first
        self.places[custom_id] = place


def _index(paths: list[Path]) -> _Found:
    found = _Found()
    for number, path in enumerate(paths):
        offset = 0
        with path.open("rb") as f:
            for line_number, line in enumerate(f, 1):
                try:
                    record = loads(line)
                    custom_id = str(record["custom_id"])
                    ok = record.get("error") is None
                except (ValueError, KeyError, TypeError):
                    if line.strip():
                        found.unreadable.append(f"{path}:{line_number}")
                else:
                    found.add(custom_id, (number, offset, len(line), ok))
                offset += len(line)
    return found


def _write(found: _Found, paths: list[Path], order: list[str], out: IO[bytes]) -> int:
    """Copy the records kept, in input order; the number of failed records."""
    files = [path.open("rb") for path in paths]
    failed = 0
    try:
        for custom_id in order:
            place = found.places.get(custom_id)
            if place is None:
                continue
            number, offset, length, ok = place
            files[number].seek(offset)
            line = files[number].read(length)
            out.write(line if line.endswith(b"\n") else line + b"\n")
            failed += not ok
    finally:
        for f in files:
            f.close()
    return failed


def _check_paths(args: argparse.Namespace) -> tuple[Path, list[Path], Path]:
    input_path, outputs, merged = (
        Path(args.input),
        [Path(p) for p in args.outputs],
        Path(args.output),
    )
    for path in (input_path, *outputs):
        if not path.is_file():
            raise InputError(f"cannot read {path}: no such file")
    taken = {p.resolve() for p in (input_path, *outputs)}
    if merged.resolve() in taken:
        raise InputError(f"-o {merged} is one of the files to read; choose another name")
    if len(taken) != 1 + len(outputs):
        raise InputError("a file is named twice among the input and the outputs")
    if not merged.parent.is_dir():
        raise InputError(f"cannot write {merged}: folder {merged.parent} does not exist")
    return input_path, outputs, merged


def _report(found: _Found, missing: list[str], unexpected: list[str], failed: int,
            written: int, merged: Path) -> None:  # fmt: skip
    p = sys.stderr

    def some(ids: list[str]) -> str:
        shown = ", ".join(repr(i) for i in ids[:10])
        return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")

    print(f"Merged {written} record(s) into {merged} ({failed} failed request(s)).", file=p)
    if missing:
        print(f"Missing: {len(missing)} input line(s) have no record: {some(missing)}", file=p)
    if found.duplicated:
        dup = sorted(found.duplicated)
        print(f"Duplicated: {len(dup)} custom_id(s) have several records: {some(dup)}", file=p)
    if unexpected:
        print(f"Unexpected: {len(unexpected)} record(s) not in the input (left out): "
              f"{some(unexpected)}", file=p)  # fmt: skip
    if found.unreadable:
        print(f"Unreadable lines (left out): {some(found.unreadable)}", file=p)


def run_merge(args: argparse.Namespace) -> int:
    try:
        input_path, outputs, merged = _check_paths(args)
        order = [item.custom_id for item in read_input(input_path)]
        found = _index(outputs)
    except (InputError, OSError) as exc:
        print(f"paradigm-trio merge: {exc}", file=sys.stderr)
        return 2
    expected = set(order)
    missing = [i for i in order if i not in found.places]
    unexpected = sorted(i for i in found.places if i not in expected)
    tmp = merged.with_name(merged.name + ".tmp")
    try:
        with tmp.open("wb") as out:
            failed = _write(found, outputs, order, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, merged)
    except OSError as exc:
        print(f"paradigm-trio merge: cannot write {merged}: {exc}", file=sys.stderr)
        return 2
    _report(found, missing, unexpected, failed, len(order) - len(missing), merged)
    return 1 if missing or found.duplicated or unexpected or found.unreadable else 0
