"""``_records.builder``: the library's fast constructors of its frozen records."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest

import paradigm_trio as pt
from paradigm_trio._endpoints._chat_kind import BatchResult
from paradigm_trio._endpoints._completion import ChatCompletion, Choice, Message, Usage
from paradigm_trio._endpoints._models import make_request
from paradigm_trio._events import Attempt
from paradigm_trio._records import builder

RECORDS = [Usage, Message, Choice, ChatCompletion, Attempt, BatchResult, pt.ChatRequest]


def sample(cls: type[Any]) -> list[object]:
    return [f"{cls.__name__}.{f.name}" for f in dataclasses.fields(cls)]


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_a_built_record_is_the_record_its_init_makes(cls: type[Any]) -> None:
    values = sample(cls)
    built = builder(cls)(*values)
    assert type(built) is cls
    assert [getattr(built, f.name) for f in dataclasses.fields(cls)] == values
    if cls is not pt.ChatRequest:  # (its __init__ checks its values: these are not valid)
        made = cls(*values)
        assert built == made
        assert hash(built) == hash(made)
        assert repr(built) == repr(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.__setattr__(dataclasses.fields(cls)[0].name, "changed")
    assert copy.copy(built) == built


def test_a_built_record_pickles_and_replaces_like_any() -> None:
    usage = builder(Usage)(1, 2, 3)
    assert pickle.loads(pickle.dumps(usage)) == Usage(1, 2, 3)
    assert dataclasses.replace(usage, total_tokens=9) == Usage(1, 2, 9)


def test_a_builder_needs_every_field() -> None:
    with pytest.raises(TypeError):
        builder(Usage)(1, 2)


@dataclasses.dataclass(frozen=True)
class _NoSlots:
    a: int


@dataclasses.dataclass(slots=True)
class _NotFrozen:
    a: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Base:
    a: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Derived(_Base):
    b: int


@pytest.mark.parametrize("cls", [_NoSlots, _NotFrozen, _Derived, int])
def test_only_a_frozen_slotted_dataclass_of_its_own_has_a_builder(cls: type[Any]) -> None:
    with pytest.raises(TypeError):
        builder(cls)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"model": "m", "temperature": 0.5, "max_tokens": 9},
        {"extra": {"x": 1}, "custom_id": "c", "stop": ["a", "b"]},
        {"seed": None, "top_p": 1.0},
    ],
)
def test_make_request_builds_what_the_constructor_does(params: dict[str, Any]) -> None:
    messages = [{"role": "user", "content": "hi"}]
    given = {k: v for k, v in params.items() if v is not None}
    if isinstance(given.get("stop"), list):
        given["stop"] = tuple(given["stop"])
    built = make_request(messages, **params)
    assert built == pt.ChatRequest(messages=messages, **given)
    assert built.encoded("m0") == pt.ChatRequest(messages=messages, **given).encoded("m0")
    if "extra" not in params:  # a dict of its own, as the default factory makes
        assert built.extra == {}
        assert built.extra is not make_request(messages, **params).extra


def test_make_request_still_checks_and_refuses() -> None:
    with pytest.raises(pt.InvalidRequestError):
        make_request([{"role": "user", "content": "hi"}], temperature=-1.0)
    with pytest.raises(TypeError):
        make_request([{"role": "user", "content": "hi"}], no_such_field=1)
