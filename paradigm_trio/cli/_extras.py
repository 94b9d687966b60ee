"""How to install an optional extra, said once for every message of the CLI."""

from __future__ import annotations

__all__ = ["MOCK_EXTRA", "install_hint"]

MOCK_EXTRA = ("mock", "quart-trio", "hypercorn", "trustme")
"""The ``mock`` extra and its packages (pyproject.toml)."""


def install_hint(extra: str, *packages: str) -> str:
    """The commands that install ``extra``'s ``packages``: by name, which works anywhere,
    or as the extra from a clone of paradigm-trio (it is not on PyPI)."""
    return (
        f"pip install {' '.join(packages)}, or from a clone of paradigm-trio: "
        f"pip install '.[{extra}]'"
    )
