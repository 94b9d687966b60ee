"""Developer tasks.  ``nox`` with no arguments runs what a contributor should run."""

from __future__ import annotations

import os

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHON = os.environ.get("NOX_PYTHON") or None


def _install(session: nox.Session, *groups: str) -> None:
    session.install("-e", ".[mock,redis]")
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit, integration and (quick profile) property tests."""
    _install(session, "test")
    session.run("pytest", *session.posargs, env={"HYPOTHESIS_PROFILE": "quick"})


@nox.session(python=PYTHON)
def property(session: nox.Session) -> None:
    """Property tests with many more examples (fixed seed so failures reproduce)."""
    _install(session, "test")
    session.run(
        "pytest",
        "tests/property",
        "--hypothesis-seed=20261127",
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": "thorough"},
    )


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The soak: 100,000 requests through a mock process with 10 % faults (not in the default run).

    ``PARADIGM_SOAK_REQUESTS=10000 nox -s soak`` for a shorter run; ``PARADIGM_SOAK_TIMEOUT``
    (default 1200 s) bounds it.
    """
    _install(session, "test")
    session.run("pytest", "tests/soak", "-s", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, and the import layers (lint-imports)."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # import-linter reads the source tree; the packages need only be importable from it.
    session.run("lint-imports", env={"PYTHONPATH": os.getcwd()})


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on both packages."""
    _install(session, "typecheck")
    session.run("mypy", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the Sphinx docs with warnings as errors."""
    _install(session, "docs")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-n", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks against the peers (not tests): prints tables, rewrites docs/performance.md.

    ``nox -s bench`` is the full run (about 20 minutes); ``nox -s bench -- --quick`` takes
    about 5; ``nox -s bench -- scaling memory`` runs some scenarios (printed only).
    """
    _install(session, "bench")
    session.run("python", "-m", "benchmarks", *session.posargs)
