"""Keeping credentials out of everything a user sees: checks of the key, redaction, masking.

* :func:`check_api_key` refuses a key that cannot be sent in a header (whitespace, control
  or non-ASCII characters) or that is too short (under :data:`MIN_API_KEY_LENGTH`) to be
  told apart from ordinary text, with messages that never show the key.
* A :class:`Redactor` (one per client, its patterns compiled once) removes the key from
  text that came from the server or the network, in every form a server can echo it in,
  and masks the password of any URL in that text (``user:***@``).
* :func:`mask_credentials` masks the password of every URL in a text, and the values of
  its query parameters that carry credentials (the client's ``base_url`` in reprs and
  messages, a shared quota's Redis URL); :func:`mask_bad_url` masks all that may be
  credentials in a URL that does not parse.

What a :class:`Redactor` matches, so that an echo of the ``Authorization`` header never
reaches an error, a record, an event or a file:

* each character of the key either as itself or escaped: ``\\uXXXX`` (JSON, hex digits in
  any case), ``%XX`` (percent-encoding, any case) and the same percent-encoded again up to
  three times (``%252F``, ``%25252F``...), ``=XX`` (quoted-printable), ``\\NNN`` (octal),
  ``\\xXX``, ``&#NN;``/``&#xXX;`` and the named HTML entities; each may follow up to 7
  backslashes, so ``\\/``, ``\\"`` and the doubled escapes of JSON inside JSON match too.
  Forms may be mixed within one echo;
* the key only where it can stand as a credential: not inside a longer run of
  ``[A-Za-z0-9_-]`` (with ``api_key="limit_exceeded"``, ``rate_limit_exceeded`` is kept).
  An escape counts as the one character it stands for, so a key is matched after any
  escaped character: ``%20``, ``%2520`` (and deeper), ``=20``, ``\\040``, ``\\u0020``,
  ``\\x20`` or ``\\n``;
* the key in base64 (standard or URL-safe alphabet) at any alignment, so the base64 of
  ``Bearer <key>``, of the key, or of a larger blob holding the key: the characters that
  encode only the key's bits are removed, line breaks among them included (MIME's
  ``base64.encodebytes`` breaks its lines every 76 characters; also ``\\n`` in JSON).
"""

from __future__ import annotations

import base64
import re
import traceback
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ._credentials import MASK, mask_bad_url, mask_credentials
from ._errors import ConfigurationError

__all__ = ["MIN_API_KEY_LENGTH", "Redactor", "check_api_key", "mask_bad_url", "mask_credentials"]

MIN_API_KEY_LENGTH: Final = 8
"""The shortest API key accepted: a shorter one cannot be told apart from ordinary text."""

_WORD: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# How many times percent-encoding may be applied again to an echo (``%2F``, ``%252F``...).
_PERCENT_LEVELS: Final = 4
# An escape (of any of the encodings above) is one character, whatever it stands for: a
# key after one stands apart, even when the escape ends with a digit (``%2520<key>``).
_ESCAPE_ENDS: Final = (
    *(rf"%{'25' * level}[0-9A-Fa-f]{{2}}" for level in range(_PERCENT_LEVELS)),
    r"\\u[0-9A-Fa-f]{4}",
    r"\\x[0-9A-Fa-f]{2}",
    r"\\[nrtbf]",
    r"\\[0-7]{3}",
    r"=[0-9A-Fa-f]{2}",
)
_NOT_AFTER_WORD: Final = (
    r"(?:(?<![A-Za-z0-9_\-])" + "".join(f"|(?<={end})" for end in _ESCAPE_ENDS) + ")"
)
# A line break inside base64 (MIME wraps it), as is or JSON-escaped.
_BREAK: Final = r"(?:\r?\n|(?:\\r)?\\n)?"
# What makes a text worth a look with the pattern, beside a literal echo.
_ESCAPE_MARKS: Final = ("\\", "%", "&", "=")
_NOT_BEFORE_WORD: Final = r"(?![A-Za-z0-9_\-])"
_ENTITIES: Final = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}


def check_api_key(key: object, *, source: str) -> str:
    """``key`` if it can be used as an API key, else raise :class:`ConfigurationError`.

    ``source`` says where it came from (``"api_key="``, ``"$PARADIGM_API_KEY"``) for the
    message, which never shows the key.
    """
    if not isinstance(key, str):
        raise ConfigurationError(
            f"the API key ({source}) must be a string, got {type(key).__name__}"
        )
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ConfigurationError(
            f"the API key ({source}) contains whitespace or control characters (is it "
            "pasted with a trailing newline?)"
        )
    position = next((i for i, ch in enumerate(key) if not ch.isascii()), None)
    if position is not None:
        raise ConfigurationError(
            f"the API key ({source}) contains a non-ASCII character at position "
            f"{position + 1} (a typographic quote or an accented letter?): an HTTP header "
            "cannot carry it"
        )
    if len(key) < MIN_API_KEY_LENGTH:
        raise ConfigurationError(
            f"the API key ({source}) is {len(key)} character(s) long; at least "
            f"{MIN_API_KEY_LENGTH} are required, so that it can be told apart from ordinary "
            "text and kept out of error messages"
        )
    return key


def _hex(value: int, digits: int) -> str:
    """A pattern for ``value`` in hex, digits in either case."""
    text = f"{value:0{digits}x}"
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in text)


def _char_pattern(ch: str) -> str:
    """Every way one character of the key can be written in an echo."""
    code = ord(ch)
    forms = [
        re.escape(ch),
        r"\\u" + _hex(code, 4),
        f"%(?:25){{0,{_PERCENT_LEVELS - 1}}}" + _hex(code, 2),
        "=" + _hex(code, 2),
        rf"\\{code:03o}",
        r"\\x" + _hex(code, 2),
        f"&#0{{0,4}}{code};",
        "&#[xX]0{0,4}" + _hex(code, 2) + ";",
    ]
    if ch in _ENTITIES:
        forms.append(re.escape(_ENTITIES[ch]))
    return r"\\{0,7}(?:" + "|".join(forms) + ")"


def _base64_fragments(secret: bytes) -> list[str]:
    """The base64 characters that encode only ``secret``'s bits, at each of 3 alignments."""
    fragments: list[str] = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret + b"\0\0").decode()
        start, end = -(-8 * offset // 6), 8 * (offset + len(secret)) // 6
        fragment = encoded[start:end]
        for form in (fragment, fragment.translate(str.maketrans("+/", "-_"))):
            if form not in fragments:
                fragments.append(form)
    return fragments


class Redactor:
    """Removes one secret (the API key) from text, in every form a server can echo it in.

    Built once per client: the pattern is compiled here, not per call.  See the module
    docstring for what it matches.
    """

    __slots__ = ("_literals", "_pattern")

    def __init__(self, secret: str) -> None:
        chars = "".join(map(_char_pattern, secret))
        before = _NOT_AFTER_WORD if secret[0] in _WORD else ""
        after = _NOT_BEFORE_WORD if secret[-1] in _WORD else ""
        fragments = _base64_fragments(secret.encode())
        wrapped = [_BREAK.join(map(re.escape, fragment)) for fragment in fragments]
        alternatives = [before + chars + after, *wrapped]
        self._pattern = re.compile("|".join(alternatives))
        self._literals = (secret, *fragments)

    def __repr__(self) -> str:
        return f"<Redactor {MASK}>"

    def text(self, text: str) -> str:
        """``text`` without the secret (each echo becomes ``***``) or URL passwords."""
        if self._suspect(text):
            text = self._pattern.sub(MASK, text)
        return mask_credentials(text)

    def _suspect(self, text: str) -> bool:
        """Whether ``text`` may hold an echo: without an escape mark, only a literal can."""
        for mark in _ESCAPE_MARKS:  # (a loop is 4x faster than any())
            if mark in text:
                return True
        if "\n" in text:  # base64 broken into lines (MIME)
            text = text.replace("\r", "").replace("\n", "")
        for literal in self._literals:  # noqa: SIM110
            if literal in text:
                return True
        return False

    def clip(self, text: str, limit: int) -> str:
        """The first ``limit`` characters of ``text`` once redacted.

        Only a window a little longer than ``limit`` is redacted, never the whole of a
        large text, and an echo cut by the window's end is never shown in part.
        """
        # Longer than any echo of the secret (17 characters a character at most) and than
        # any URL password match (550 characters at most).
        margin = 64 * len(self._literals[0]) + 64
        end = max(limit, margin)
        while True:
            window = text[: end + margin]
            redacted = self.text(window)
            if len(window) == len(text) or len(redacted) >= limit + margin:
                return redacted[:limit]
            end *= 2

    def value(self, value: object) -> object:
        """A copy of a JSON value (parsed) with the secret removed from every string, object
        key and number.  Iterative: a server's deeply nested body cannot exhaust the stack."""
        root: list[Any] = [value]
        todo: list[tuple[Any, Any]] = [(root, 0)]
        while todo:
            container, index = todo.pop()
            item = container[index]
            if isinstance(item, dict):
                copy: Any = {self.text(str(k)): v for k, v in item.items()}
            elif isinstance(item, list | tuple):
                copy = list(item)
            else:
                container[index] = self._scalar(item)
                continue
            container[index] = copy
            todo += [(copy, k) for k in (copy if isinstance(copy, dict) else range(len(copy)))]
        return root[0]

    def _scalar(self, value: object) -> object:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value if self.text(repr(value)) == repr(value) else MASK
        return value

    def headers(self, headers: Iterable[tuple[str, str]] | Mapping[str, str]) -> dict[str, str]:
        """Headers (name, value pairs or a mapping) with the secret removed from each."""
        items = headers.items() if isinstance(headers, Mapping) else headers
        return {self.text(name): self.text(value) for name, value in items}

    def scrub_chain(self, exc: BaseException) -> bool:
        """Redact, in place, the messages and notes of ``exc`` and every exception chained
        to it (causes, contexts, group members).

        Returns whether all of them are clean now: an exception whose text lives elsewhere
        than in its ``args`` may not be, and must then be left out of any traceback.
        """
        clean, seen, todo = True, set(), [exc]
        while todo:
            current = todo.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            self._scrub(current)
            shown = "".join(traceback.format_exception_only(current))
            clean = clean and self.text(shown) == shown
            todo += [e for e in (current.__cause__, current.__context__) if e is not None]
            if isinstance(current, BaseExceptionGroup):
                todo += current.exceptions
        return clean

    def _scrub(self, exc: BaseException) -> None:
        exc.args = tuple(self.text(a) if isinstance(a, str) else a for a in exc.args)
        if isinstance(exc, OSError):
            for name in ("strerror", "filename", "filename2"):
                value = getattr(exc, name)
                if isinstance(value, str):
                    setattr(exc, name, self.text(value))
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            exc.__notes__ = [self.text(n) if isinstance(n, str) else n for n in notes]

    def optional(self, text: str | None) -> str | None:
        """:meth:`text`, passing ``None`` through (a header that may be absent)."""
        return None if text is None else self.text(text)
