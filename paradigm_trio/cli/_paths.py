"""``batch``'s files, checked before anything is sent: every refusal is one line, exit 2.

The input must be a readable regular file.  Every file the run writes (the output, its
manifest and lock file next to it, the ``--report``) must be a file, not a directory,
in an existing folder, and writable, as the operating system answers for this process
(``os.access``).  The output's folder must be writable too: the manifest and the lock
file are created there, and a ``--retry-failed`` rewrite renames a new output over the
old one.  ``-`` (stdout) is refused: the output is also what a rerun resumes from.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ._batchfile import Manifest
from ._lock import lock_path_for

__all__ = ["PathRefused", "check_paths"]


class PathRefused(Exception):
    """A path the run cannot use; ``str()`` is the one-line reason."""


def _stat(path: Path) -> os.stat_result | None:
    """``path``'s status, or None if it does not exist."""
    try:
        return path.stat()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise PathRefused(f"cannot use {path}: a folder in its path is not a folder") from None
    except OSError as exc:
        raise PathRefused(f"cannot use {path}: {exc.strerror or exc}") from None


def check_input(path: Path) -> None:
    """The input exists, is a regular file, and is readable."""
    if str(path) == "-":
        raise PathRefused(
            "reading the requests from stdin (-) is not supported; save them to a file"
        )
    st = _stat(path)
    if st is None:
        raise PathRefused(f"cannot read {path}: no such file")
    if stat.S_ISDIR(st.st_mode):
        raise PathRefused(f"cannot read {path}: it is a directory, not a JSONL file")
    if not stat.S_ISREG(st.st_mode):
        raise PathRefused(
            f"cannot read {path}: not a regular file (a pipe or a device cannot be hashed "
            "for resuming; save it to a file first)"
        )
    if not os.access(path, os.R_OK):
        raise PathRefused(f"cannot read {path}: permission denied")


def _check_writable(path: Path, what: str, *, in_place: bool = False) -> None:
    """``path`` can be written: its folder exists; if ``path`` exists it is a writable
    file, regular unless ``in_place``; the folder is writable unless ``in_place`` and
    ``path`` exists (``in_place``: written where it is, never created beside or renamed).
    """
    folder = path.parent
    folder_st = _stat(folder)
    if folder_st is None:
        raise PathRefused(f"cannot write {what} {path}: folder {folder} does not exist")
    if not stat.S_ISDIR(folder_st.st_mode):
        raise PathRefused(f"cannot write {what} {path}: {folder} is not a folder")
    st = _stat(path)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise PathRefused(f"cannot write {what} {path}: it is a directory")
    if st is not None and not in_place and not stat.S_ISREG(st.st_mode):
        raise PathRefused(f"cannot write {what} {path}: not a regular file")
    if st is not None and not os.access(path, os.W_OK):
        raise PathRefused(f"cannot write {what} {path}: permission denied")
    if (st is None or not in_place) and not os.access(folder, os.W_OK | os.X_OK):
        raise PathRefused(f"cannot write {what} {path}: permission denied in folder {folder}")


def check_paths(input_path: Path, output: Path, report: Path | None) -> None:
    """Raise :class:`PathRefused` unless the run can read its input and write every file."""
    check_input(input_path)
    if str(output) == "-":
        raise PathRefused(
            "-o -: writing the results to stdout is not supported (the output file is also "
            "what a rerun resumes from); give a file name"
        )
    if output.resolve() == input_path.resolve():
        raise PathRefused("the output must not be the input file")
    _check_writable(output, "the output")
    _check_writable(Manifest.path_for(output), "the manifest")
    _check_writable(lock_path_for(output), "the lock file")
    if report is None:
        return
    if str(report) == "-":
        raise PathRefused(
            "--report -: writing the report to stdout is not supported; give a file name"
        )
    others = (input_path, output, Manifest.path_for(output), lock_path_for(output))
    if any(report.resolve() == other.resolve() for other in others):
        raise PathRefused(f"--report {report} must not be the input, the output or its manifest")
    _check_writable(report, "the report", in_place=True)
