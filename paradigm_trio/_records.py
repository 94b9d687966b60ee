"""Fast construction of the library's frozen records, for its own use on every request.

The records a request makes (its :class:`ChatCompletion`, ``Choice``, ``Message`` and
``Usage``, its :class:`Attempt`, its :class:`BatchResult`) are frozen slotted dataclasses:
their generated ``__init__`` sets each field with ``object.__setattr__``, some 85 ns a
field (a Python call into a C wrapper that slices its arguments), where a plain slotted
class stores a field in a few.  Measured with ``timeit`` on the 2-core AMD EPYC of
``docs/performance.md`` (CPython 3.11.7), eight fields: 847 ns through the frozen
``__init__``, 349 ns through :func:`builder`'s.

:func:`builder` makes, once per class, a constructor that fills a mutable twin of the
class (the same slots, so the same memory layout) and then gives the object its real
class (``__class__`` assignment, which CPython allows between classes of the same layout).
What comes out is an ordinary instance of the frozen class: equal, hashed, printed and
frozen like one made by its ``__init__``.  The constructor takes every field, in order,
positionally, and does nothing else: no defaults, no ``__post_init__``; it is for code
that already holds the values the class's own ``__init__`` would keep (parsers, the
engine's records).  The public constructors are unchanged.
"""

from __future__ import annotations

import dataclasses
import keyword
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["builder"]

T = TypeVar("T")


def builder(cls: type[T]) -> Callable[..., T]:
    """A constructor of ``cls`` (a frozen dataclass with ``slots=True`` and no base class
    but ``object``) that takes the value of every field positionally, in the order of
    :func:`dataclasses.fields`, and sets them without checks.

    Raises:
        TypeError: ``cls`` is not such a class.
    """
    names = _slot_names(cls)
    twin = type(f"_{cls.__name__}Twin", (), {"__slots__": names})
    params = ", ".join(names)
    body = "".join(f"    obj.{name} = {name}\n" for name in names)
    source = (
        f"def build({params}):\n"
        "    obj = new(twin)\n"
        f"{body}"
        "    obj.__class__ = cls\n"
        "    return obj\n"
    )
    namespace: dict[str, Any] = {"new": object.__new__, "twin": twin, "cls": cls}
    exec(source, namespace)  # (as dataclasses makes its own methods)
    build: Callable[..., T] = namespace["build"]
    build.__qualname__ = f"builder({cls.__qualname__})"
    build.__doc__ = f"A {cls.__name__} of every field's value, in order (no checks)."
    # The twin's layout must be the class's: checked now, not on a request's way.
    build(*(None for _ in names))
    return build


def _slot_names(cls: type[Any]) -> tuple[str, ...]:
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__} is not a frozen dataclass")
    if cls.__bases__ != (object,) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a slotted dataclass of its own")
    names = tuple(f.name for f in dataclasses.fields(cls))
    if tuple(getattr(cls, "__slots__", ())) != names or any(map(keyword.iskeyword, names)):
        raise TypeError(f"{cls.__name__}'s slots are not its fields")
    return names
