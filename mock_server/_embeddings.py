"""``POST /embeddings``: request validation, deterministic vectors and the answer.

A vector is a function of the seed, the model and the input text only (never of the
request it came in, its position in it, or the concurrency), so a client can check every
vector it receives against :func:`embedding_vector`:

* ``shake_256(seed, model, text)`` gives two bytes per dimension, read as little-endian
  unsigned 16-bit integers ``u``;
* each component is ``u - 32767.5``, the vector is scaled to length 1, and each number is
  rounded to float32 (so ``"float"`` and ``"base64"`` answers carry the same numbers).

``dimensions`` gives the length (default :data:`DEFAULT_EMBEDDING_DIMENSIONS`).
Tokens: ``1 + ceil(len(text) / 4)`` per input.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import sys
from array import array
from dataclasses import dataclass
from typing import Any, Final

from ._checks import strict_json
from ._content import RequestError, check_text

__all__ = [
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "EmbeddingRequest",
    "embedding_tokens",
    "embedding_vector",
    "embeddings_body",
    "parse_embedding_request",
]

DEFAULT_EMBEDDING_DIMENSIONS: Final = 1024
"""The length of a vector when the request gives no ``dimensions`` (multilingual-e5-large's)."""

MAX_DIMENSIONS: Final = 8192
MAX_INPUTS: Final = 2048
_FORMATS: Final = ("float", "base64")


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """The fields of an embeddings request the mock acts on."""

    model: str
    inputs: tuple[str, ...]
    encoding_format: str
    dimensions: int
    prompt_tokens: int


def embedding_tokens(text: str) -> int:
    """The tokens the mock counts for one input: ``1 + ceil(len(text) / 4)``."""
    return 1 + math.ceil(len(text) / 4)


def embedding_vector(
    text: str, *, model: str, dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS, seed: int = 0
) -> list[float]:
    """The mock's vector of ``text``: deterministic, of length 1, float32 values."""
    key = "\x1f".join((str(seed), "embedding", model, text)).encode("utf-8", "surrogatepass")
    raw = array("H")
    raw.frombytes(hashlib.shake_256(key).digest(2 * dimensions))
    if sys.byteorder == "big":
        raw.byteswap()
    centred = [u - 32767.5 for u in raw]
    norm = math.hypot(*centred)
    return array("f", [x / norm for x in centred]).tolist()


def _fail(message: str, param: str, code: str = "invalid_value") -> RequestError:
    return RequestError(message, param=param, code=code)


def _inputs(data: dict[str, Any], strings_only: bool) -> tuple[str, ...]:
    if "input" not in data or data["input"] is None:
        raise _fail("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    raw = data["input"]
    if strings_only and not isinstance(raw, str):
        raise _fail(
            f"Invalid type for 'input': expected a string, but got "
            f"{'an array' if isinstance(raw, list) else type(raw).__name__}. This server "
            "embeds one string per request.",
            "input",
            "invalid_type",
        )
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise _fail(
            "Invalid 'input': expected a non-empty string or a non-empty array of strings.",
            "input",
        )
    if len(raw) > MAX_INPUTS:
        raise _fail(f"Invalid 'input': at most {MAX_INPUTS} inputs, got {len(raw)}.", "input")
    for i, text in enumerate(raw):
        if not isinstance(text, str):
            raise _fail(
                f"Invalid 'input[{i}]': expected a string (token arrays are not supported "
                "by this mock).",
                f"input[{i}]",
                "invalid_type",
            )
        if not text:
            raise _fail(f"Invalid 'input[{i}]': an input must not be empty.", f"input[{i}]")
    return tuple(raw)


def _dimensions(data: dict[str, Any]) -> int:
    value = data.get("dimensions")
    if value is None:
        return DEFAULT_EMBEDDING_DIMENSIONS
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DIMENSIONS:
        raise _fail(
            f"Invalid 'dimensions': expected an integer from 1 to {MAX_DIMENSIONS}, "
            f"got {json.dumps(value)[:40]}.",
            "dimensions",
        )
    return value


def parse_embedding_request(
    body: bytes, *, models: tuple[str, ...] | None, strings_only: bool = False
) -> EmbeddingRequest:
    """Validate an embeddings body; raise :class:`RequestError` naming the problem.

    With ``strings_only`` (:attr:`MockConfig.embeddings_strings_only`) ``input`` must be
    one string, as Paradigm's schema types it; a list gets a 400 naming ``input``.
    """
    try:
        data = strict_json(body)
    except (ValueError, RecursionError):
        raise RequestError(
            "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None
    check_text(data)
    if not isinstance(data, dict):
        raise RequestError("The request body must be a JSON object.", code="invalid_body")
    model = data.get("model")
    if model is None:
        raise _fail("You must provide a model parameter.", "model", "missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise _fail("Invalid 'model': expected a non-empty string.", "model", "invalid_type")
    if models is not None and model not in models:
        raise _fail(
            f"The model `{model[:100]}` does not exist or you do not have access to it.",
            "model",
            "model_not_found",
        )
    inputs = _inputs(data, strings_only)
    encoding = data.get("encoding_format", "float")
    if encoding not in _FORMATS:
        raise _fail(
            f"Invalid 'encoding_format': expected 'float' or 'base64', got "
            f"{json.dumps(encoding)[:40]}.",
            "encoding_format",
        )
    return EmbeddingRequest(
        model=model,
        inputs=inputs,
        encoding_format=encoding,
        dimensions=_dimensions(data),
        prompt_tokens=sum(map(embedding_tokens, inputs)),
    )


def embeddings_body(seed: int, request: EmbeddingRequest) -> dict[str, Any]:
    """The ``list`` object answering ``request`` (OpenAI schema)."""
    data = []
    for index, text in enumerate(request.inputs):
        vector = embedding_vector(
            text, model=request.model, dimensions=request.dimensions, seed=seed
        )
        value: object = vector
        if request.encoding_format == "base64":
            packed = array("f", vector)
            if sys.byteorder == "big":
                packed.byteswap()
            value = base64.b64encode(packed.tobytes()).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = request.prompt_tokens
    return {
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
