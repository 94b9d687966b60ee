"""Embeddings: :class:`EmbeddingRequest`, :class:`Embeddings`, and packing.

``POST /embeddings`` (OpenAI-compatible): ``input`` (a string or a list of strings),
``model``, ``encoding_format`` (``"float"``, or ``"base64"``: little-endian float32 packed
and base64-encoded) and ``dimensions``.  Vectors are decoded with the standard library
(:mod:`array` and :mod:`base64`): numpy is not needed, and used only when asked for
(:meth:`Embeddings.numpy`).

*Packing* (used by :meth:`Client.embed_batch <paradigm_trio.Client.embed_batch>`): many
small requests that ask for the same thing (model, dimensions, encoding, extra fields)
are merged into one request of at most ``pack_inputs`` inputs and ``pack_tokens``
estimated tokens, and the answer is split back per request (:func:`split`).  No I/O here.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import sys
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from .._errors import APIResponseValidationError, InvalidRequestError
from .._numbers import finite_floats, whole
from ._completion import Usage
from ._encode import _JSON_ERRORS, _dumps, _unsendable
from ._models import check_custom_id, check_model, check_positive, checked_extra

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_PACK_INPUTS",
    "DEFAULT_PACK_TOKENS",
    "Embedding",
    "EmbeddingRequest",
    "Embeddings",
    "EmbeddingsEndpoint",
    "EncodingFormat",
    "MAX_EMBEDDING_INPUTS",
    "join",
    "joins",
    "merge",
    "singles",
    "split",
    "usage_of_embeddings",
]

EncodingFormat = Literal["float", "base64"]

DEFAULT_EMBEDDING_MODEL: Final = "multilingual-e5-large"
"""The model of an embedding request that names none (a Paradigm embedding model)."""

MAX_EMBEDDING_INPUTS: Final = 2048
"""The most inputs one ``/embeddings`` request may carry (the OpenAI API's limit)."""

DEFAULT_PACK_INPUTS: Final = 64
"""Inputs packed into one request at most, by default (see :func:`merge`)."""

DEFAULT_PACK_TOKENS: Final = 8192
"""Estimated tokens packed into one request at most, by default (see :func:`merge`)."""

_FORMATS: Final = ("float", "base64")
_MODELLED: Final = frozenset({"input", "model", "dimensions", "encoding_format"})


def _checked_inputs(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if isinstance(value, bytes) or not isinstance(value, Sequence):
        raise InvalidRequestError(
            f"input must be a string or a list of strings, got {type(value).__name__}"
        )
    if not value:
        raise InvalidRequestError("input must not be empty")
    if len(value) > MAX_EMBEDDING_INPUTS:
        raise InvalidRequestError(
            f"input holds {len(value)} strings, more than the {MAX_EMBEDDING_INPUTS} one "
            "request may carry: use Client.embed_batch, which sends them in several requests"
        )
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise InvalidRequestError(
                f"input[{i}] must be a string, got {type(text).__name__} (token arrays "
                "are not supported)"
            )
        if not text:
            raise InvalidRequestError(f"input[{i}] is empty: the API refuses empty strings")
    return tuple(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class EmbeddingRequest:
    """One logical embeddings request: one or more texts to embed.

    Validated at construction (an :class:`InvalidRequestError` says what is wrong), so
    nothing invalid is sent.

    Attributes:
        inputs: the texts, one vector each (a single string is one input).  At most
            :data:`MAX_EMBEDDING_INPUTS` (2048); none empty.
        model: the embedding model, or ``None`` for the client's default embedding model
            (``multilingual-e5-large`` unless ``Client(embedding_model=...)``).
        dimensions: the length of the vectors, for models that can shorten them, or
            ``None`` for the model's own.
        encoding_format: how the vectors travel: ``"base64"`` (float32, four bytes a
            number; the default, ``None``, sends this) or ``"float"`` (JSON numbers).
            The vectors you get are floats either way.
        extra: more body fields, passed through.  May not set the fields above.
        custom_id: a stable id for this request (echoed on results; derives the
            ``Idempotency-Key``).
    """

    inputs: Sequence[str]
    model: str | None = None
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    custom_id: str | None = None
    _tokens: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        inputs = _checked_inputs(self.inputs)
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "_tokens", sum((len(text) + 3) // 4 + 1 for text in inputs))
        check_model(self.model)
        check_positive("dimensions", self.dimensions)
        if self.encoding_format is not None and self.encoding_format not in _FORMATS:
            raise InvalidRequestError(
                f"encoding_format must be 'float' or 'base64', got {self.encoding_format!r}"
            )
        object.__setattr__(self, "extra", checked_extra(self.extra, _MODELLED))
        check_custom_id(self.custom_id)
        try:
            _dumps((self.custom_id, self.model, self.inputs, self.extra))
        except _JSON_ERRORS as exc:
            raise _unsendable(self._parts(), exc) from None

    def _parts(self) -> dict[str, object]:
        return {
            "custom_id": self.custom_id,
            "model": self.model,
            "input": list(self.inputs),
            "extra": self.extra,
        }

    def to_body(self, default_model: str) -> dict[str, Any]:
        """The JSON body sent to ``/embeddings``."""
        body: dict[str, Any] = {
            "model": self.model or default_model,
            "input": list(self.inputs),
            "encoding_format": self.encoding_format or "base64",
        }
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        body.update(self.extra)
        return body

    def encode_body(self, body: Mapping[str, Any]) -> bytes:
        """``body`` as UTF-8 JSON bytes (:class:`InvalidRequestError` if it cannot be)."""
        try:
            return _dumps(body)
        except _JSON_ERRORS as exc:
            raise _unsendable({**self._parts(), "": body}, exc) from None

    def estimated_tokens(self) -> int:
        """An estimate of the tokens this request costs (for the tokens-per-minute limit).

        About four characters a token, plus one per input; an embedding has no completion.
        """
        return self._tokens


def _decode_base64(value: str, where: str) -> array[float]:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{where} is not valid base64 ({exc})") from None
    if len(raw) % 4:
        raise ValueError(f"{where} holds {len(raw)} bytes, not a whole number of float32s")
    vector = array("f")
    vector.frombytes(raw)
    if sys.byteorder == "big":  # the wire format is little-endian
        vector.byteswap()
    return finite_floats(vector, where)


def _decode_floats(value: list[Any], where: str) -> list[float]:
    try:
        vector = [float(x) for x in value if not isinstance(x, bool | str)]
    except (TypeError, ValueError):
        vector = []
    if len(vector) != len(value) or not all(map(math.isfinite, vector)):
        raise ValueError(f"{where} must be a list of finite numbers")
    return vector


@dataclass(frozen=True, slots=True, repr=False)
class Embedding:
    """The vector of one input.

    Attributes:
        index: the input's position in its request (0-based).
        vector: the numbers, as Python floats: a ``list`` when they came as JSON numbers,
            an ``array.array("f")`` (float32, compact) when they came as base64.  Also
            available as :attr:`embedding`, the OpenAI SDK's name.
        raw: the item as the server sent it (``{"object", "index", "embedding"}``).
    """

    index: int
    vector: Sequence[float]
    raw: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Embedding(index={self.index}, dimensions={len(self.vector)})"

    @property
    def embedding(self) -> Sequence[float]:
        """The vector (the same object as :attr:`vector`), under the name the OpenAI SDK
        gives it: ``answer.data[0].embedding``."""
        return self.vector

    @property
    def dimensions(self) -> int:
        """The length of the vector."""
        return len(self.vector)

    def numpy(self) -> Any:
        """The vector as a 1-D ``numpy.ndarray`` of float32 (needs numpy installed)."""
        np = _numpy()
        if isinstance(self.vector, array):
            return np.frombuffer(self.vector, dtype=np.float32).copy()
        return np.asarray(self.vector, dtype=np.float32)


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise ImportError(
            "numpy() needs numpy, which is not installed (pip install numpy); the vectors "
            "are also available without it, as .vector (floats)"
        ) from None
    return numpy


@dataclass(frozen=True, slots=True)
class Embeddings:
    """The answer to one :class:`EmbeddingRequest`: one :class:`Embedding` per input.

    Attributes:
        data: the embeddings, in the order of the inputs (``data[i].index == i``).
        model: the model that made them.
        usage: the tokens the server counted (``completion_tokens`` is 0), or ``None`` if
            it reported none.  For a request packed with others (in a batch), the server's
            count shared in proportion to each request's estimated tokens.
        request_id: the server's ``x-request-id``, if it sent one.
        raw: the response JSON (for a packed request: the part of it for this request,
            with ``index`` counted from 0 and the shared ``usage``).
    """

    data: tuple[Embedding, ...]
    model: str
    usage: Usage | None
    request_id: str | None = None
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def vectors(self) -> list[Sequence[float]]:
        """The vectors, in the order of the inputs."""
        return [e.vector for e in self.data]

    def numpy(self) -> Any:
        """The vectors as a 2-D ``numpy.ndarray`` of float32, one row per input (needs
        numpy installed)."""
        np = _numpy()
        return np.stack([e.numpy() for e in self.data]) if self.data else np.zeros((0, 0))

    @classmethod
    def from_json(
        cls, data: object, request_id: str | None = None, *, expected: int | None = None
    ) -> Embeddings:
        """Parse an ``/embeddings`` answer holding ``expected`` vectors (any number when
        ``None``); raises :class:`APIResponseValidationError` if it is not one."""
        try:
            return cls._parse(data, request_id, expected)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise APIResponseValidationError(
                f"the response is not a valid embeddings list: {exc}",
                request_id=request_id,
                body=data,
            ) from exc

    @classmethod
    def _parse(cls, data: object, request_id: str | None, expected: int | None) -> Embeddings:
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        items = data["data"]
        if not isinstance(items, list):
            raise TypeError("'data' must be a list")
        by_index: dict[int, Embedding] = {}
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise TypeError(f"data[{i}] must be an object")
            index = item.get("index", i)
            if isinstance(index, bool) or not isinstance(index, int) or index in by_index:
                raise ValueError(f"data[{i}].index is {index!r}: not a new integer")
            value = item["embedding"]
            where = f"data[{i}].embedding"
            if isinstance(value, str):
                vector: Sequence[float] = _decode_base64(value, where)
            elif isinstance(value, list):
                vector = _decode_floats(value, where)
            else:
                raise TypeError(f"{where} must be a list of numbers or a base64 string")
            by_index[index] = Embedding(index, vector, item)
        count = len(by_index) if expected is None else expected
        if sorted(by_index) != list(range(count)):
            raise ValueError(
                f"expected {count} embedding(s) indexed 0 to {count - 1}, got indexes "
                f"{sorted(by_index)[:10]}"
            )
        return cls(
            data=tuple(by_index[i] for i in range(count)),
            model=str(data.get("model") or ""),
            usage=_embedding_usage(data.get("usage")),
            request_id=request_id,
            raw=data,
        )


def _embedding_usage(raw: object) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt, total = raw.get("prompt_tokens"), raw.get("total_tokens")
    if prompt is None and total is None:
        return None
    prompt_tokens = whole(prompt if prompt is not None else total or 0, "usage.prompt_tokens")
    if total is None:
        return Usage(prompt_tokens, 0, prompt_tokens)
    return Usage(prompt_tokens, 0, whole(total, "usage.total_tokens"))


def usage_of_embeddings(embeddings: Embeddings) -> Usage | None:
    """The usage of an answer, for the engine's token accounting."""
    return embeddings.usage


class EmbeddingsEndpoint:
    """Embeddings (``POST /embeddings``), as an :class:`~._endpoint.Endpoint`."""

    __slots__ = ("model", "packing", "single")

    operation: Final = "embeddings"
    path: Final = "/embeddings"
    idempotent: Final = True  # (no state on the server: resent after any retryable failure)
    token_types: Final = ("input",)

    def __init__(self, model: str, *, packing: bool = True) -> None:
        self.model = model
        self.packing = packing
        self.single: set[str] = set()  # models that take one input per request

    def packs(self, model: str | None) -> bool:
        """Whether ``model`` (this endpoint's default for ``None``) may get several
        inputs in one request: packing is on and no refusal switched it off."""
        return self.packing and (model or self.model) not in self.single

    def single_input(self, model: str) -> bool:
        """Send ``model``'s inputs one per request from now on; whether it is new."""
        if model in self.single:
            return False
        self.single.add(model)
        return True

    @staticmethod
    def deterministic(request: EmbeddingRequest) -> bool:
        """Always: a model embeds the same text the same way."""
        return True

    def encode(self, request: EmbeddingRequest) -> bytes:
        body = request.to_body(self.model)
        if len(request.inputs) == 1 and not self.packs(request.model):
            body["input"] = request.inputs[0]  # a string, as Paradigm documents it
        return request.encode_body(body)

    def parser(self, request: EmbeddingRequest) -> Callable[[object, str | None], Embeddings]:
        return functools.partial(Embeddings.from_json, expected=len(request.inputs))

    @staticmethod
    def follow_up(request: EmbeddingRequest, stream: bool) -> None:
        """Every attempt sends the same request."""

    usage = staticmethod(usage_of_embeddings)

    @staticmethod
    def request_attributes(request: EmbeddingRequest) -> Iterator[tuple[str, Any]]:
        if request.dimensions is not None:
            yield "gen_ai.embeddings.dimension.count", request.dimensions
        if request.encoding_format is not None:
            yield "gen_ai.request.encoding_formats", (request.encoding_format,)

    @staticmethod
    def answer_attributes(answer: Any) -> Iterator[tuple[str, Any]]:
        if isinstance(answer, Embeddings) and answer.model:
            yield "gen_ai.response.model", answer.model

    @staticmethod
    def content_attributes(request: EmbeddingRequest, answer: Any) -> Iterator[tuple[str, str]]:
        return iter(())  # (the inputs are not messages: the conventions record none)


# --------------------------------------------------------------------------- packing


def _pack_key(request: EmbeddingRequest) -> tuple[object, ...]:
    extra = json.dumps(request.extra, sort_keys=True) if request.extra else ""
    return (request.model, request.dimensions, request.encoding_format, extra)


def joins(
    pack: Sequence[EmbeddingRequest],
    request: EmbeddingRequest,
    *,
    max_inputs: int,
    max_tokens: int,
) -> bool:
    """Whether ``request`` may be packed with ``pack`` into one request.

    It may when it asks for the same model, dimensions, encoding and extra fields, and
    the pack, with it, holds at most ``max_inputs`` inputs and ``max_tokens`` estimated
    tokens.  (A request that alone is over these limits is sent alone.)
    """
    if not pack:
        return True
    if _pack_key(pack[0]) != _pack_key(request):
        return False
    inputs = sum(len(r.inputs) for r in pack) + len(request.inputs)
    tokens = sum(r.estimated_tokens() for r in pack) + request.estimated_tokens()
    return inputs <= min(max_inputs, MAX_EMBEDDING_INPUTS) and tokens <= max_tokens


def merge(pack: Sequence[EmbeddingRequest]) -> EmbeddingRequest:
    """One request for the whole pack (its inputs in order); a pack of one is itself."""
    if len(pack) == 1:
        return pack[0]
    first = pack[0]
    inputs = [text for request in pack for text in request.inputs]
    return EmbeddingRequest(
        inputs=inputs,
        model=first.model,
        dimensions=first.dimensions,
        encoding_format=first.encoding_format,
        extra=first.extra,
    )


def split(answer: Embeddings, pack: Sequence[EmbeddingRequest]) -> list[Embeddings]:
    """The answer to a merged pack, as one answer per request of the pack.

    Each part has its requests' embeddings (indexed from 0) and a share of the usage in
    proportion to the requests' estimated tokens (the shares add up to the total).
    """
    if len(pack) == 1:
        return [answer]
    weights = [r.estimated_tokens() for r in pack]
    prompts = _shares(answer.usage.prompt_tokens if answer.usage else 0, weights)
    totals = _shares(answer.usage.total_tokens if answer.usage else 0, weights)
    parts: list[Embeddings] = []
    start = 0
    for i, request in enumerate(pack):
        end = start + len(request.inputs)
        data = tuple(
            Embedding(e.index - start, e.vector, {**e.raw, "index": e.index - start})
            for e in answer.data[start:end]
        )
        usage = None if answer.usage is None else Usage(prompts[i], 0, totals[i])
        raw: dict[str, Any] = {**answer.raw, "data": [e.raw for e in data]}
        if usage is None:
            raw.pop("usage", None)
        else:
            raw["usage"] = {
                "prompt_tokens": usage.prompt_tokens,
                "total_tokens": usage.total_tokens,
            }
        parts.append(Embeddings(data, answer.model, usage, answer.request_id, raw))
        start = end
    return parts


def singles(request: EmbeddingRequest) -> list[EmbeddingRequest]:
    """One request per input of ``request`` (its other fields kept; no ``custom_id``:
    each is a logical request of its own)."""
    return [replace(request, inputs=(text,), custom_id=None) for text in request.inputs]


def join(parts: Sequence[Embeddings]) -> Embeddings:
    """The answers to :func:`singles`, as the one answer to the request they split
    (``index`` counted across them, usage added up; the first part's id and model)."""
    data = tuple(
        Embedding(i, e.vector, {**e.raw, "index": i})
        for i, e in enumerate(e for part in parts for e in part.data)
    )
    usages = [p.usage for p in parts]
    usage = None
    if usages and all(u is not None for u in usages):
        usage = Usage(
            sum(u.prompt_tokens for u in usages if u), 0, sum(u.total_tokens for u in usages if u)
        )
    first = parts[0]
    raw: dict[str, Any] = {**first.raw, "data": [e.raw for e in data]}
    if usage is None:
        raw.pop("usage", None)
    else:
        raw["usage"] = {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens}
    return Embeddings(data, first.model, usage, first.request_id, raw)


def _shares(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``weights``, in integers that add up to it
    (largest remainders first)."""
    whole = sum(weights) or 1
    exact = [total * w / whole for w in weights]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: shares[i] - exact[i])
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares
