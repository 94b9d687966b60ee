"""The version of paradigm-trio: the one place it is written (``pyproject.toml`` reads it)."""

__all__ = ["__version__"]

__version__ = "0.1.0.dev0"
