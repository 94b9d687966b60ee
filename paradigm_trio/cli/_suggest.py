""" "Did you mean" for a mistyped subcommand, option or choice (``difflib``).

argparse suggests on its own only from Python 3.14 (``suggest_on_error``).  Here a
mistake is two lines: the error with the closest candidates (the subcommands, the
options of the subcommand given, or the choices of the option), and where to read the
usage (not the whole usage, which buried the error under a dozen lines).
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Iterable, Sequence
from typing import NoReturn

__all__ = ["SuggestingParser", "closest"]

_INVALID_CHOICE = re.compile(r"invalid choice: '?([^'\s]+)'? \(choose from (.+)\)")


def closest(word: str, candidates: Iterable[str]) -> list[str]:
    """The candidates close to ``word``, closest first (at most three)."""
    return difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.75)


def _hint(found: list[str]) -> str:
    return f"; did you mean {' or '.join(found)}?" if found else ""


class SuggestingParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors suggest the closest subcommand, option or choice.

    Its subparsers are of the same class (``add_subparsers`` uses the parent's).
    """

    def error(self, message: str) -> NoReturn:
        match = _INVALID_CHOICE.search(message)
        if match:
            choices = [c.strip(" '\"") for c in match.group(2).split(",")]
            message += _hint(closest(match.group(1), choices))
        self.exit(2, f"{self.prog}: error: {message}\n(see '{self.prog} --help')\n")

    def subparser(self, name: str | None) -> SuggestingParser | None:
        """The parser of subcommand ``name``, if there is one."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and name in action.choices:
                parser = action.choices[name]
                return parser if isinstance(parser, SuggestingParser) else None
        return None

    def refuse_unknown(self, extras: Sequence[str]) -> NoReturn:
        """Exit (code 2) on arguments this parser does not know, suggesting its options."""
        options = [s for s in self._option_string_actions if s.startswith("--")]
        hints = []
        for extra in extras:
            if extra.startswith("-"):
                found = closest(extra.partition("=")[0], options)
                if found:
                    hints.append(f"{extra}: did you mean {' or '.join(found)}?")
        detail = f" ({'; '.join(hints)})" if hints else ""
        self.error(f"unrecognized arguments: {' '.join(extras)}{detail}")
