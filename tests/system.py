"""Programs the tests need from the operating system, and what happens without them.

A test that needs a program nox cannot install (Debian's ``redis-server``, ``chromium``,
``chromium-driver``, ...) calls :func:`need`: where the program is missing the test is
skipped with a one-line reason, so the README's test command passes on a fresh machine;
where the environment variable ``CI`` is set (``.ci/run`` installs them all), a missing
program fails the test instead, so CI never passes by skipping.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

__all__ = ["need", "unavailable"]


def unavailable(reason: str) -> NoReturn:
    """Skip the running test for ``reason``; fail it instead when ``CI`` is set."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required: CI is set)", pytrace=False)
    pytest.skip(reason)


def need(program: str, package: str, what: str) -> str:
    """The path of ``program``, which Debian's ``package`` provides and ``what`` needs.

    Skips the test (fails it under ``CI``) when the program is not on ``PATH``.
    """
    path = shutil.which(program)
    if path is None:
        unavailable(f"{what} needs {program} (apt-get install {package})")
    return path
