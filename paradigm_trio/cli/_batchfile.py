"""JSONL batch files: reading requests lazily, writing results, resuming.

Input lines are either the OpenAI Batch format, for any endpoint (``_endpoints``)::

    {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}
    {"custom_id": "e1", "method": "POST", "url": "/v1/embeddings", "body": {"input": ...}}
    {"custom_id": "t1", "method": "POST", "url": "/tokenize", "body": {"prompt": ...}}

or a short form::

    {"custom_id": "r1", "messages": [...], "temperature": 0.2}
    {"custom_id": "e1", "input": "a text to embed"}

(``custom_id`` optional in the short form: ``line-N`` is used).  Output lines follow the
OpenAI Batch output format, plus ``attempts`` and ``elapsed``::

    {"id": "batch_req_...", "custom_id": "r1",
     "response": {"status_code": 200, "request_id": "...", "body": {...}} | null,
     "error": null | {"code": "...", "message": "..."},
     "attempts": 1, "elapsed": 0.52}
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import paradigm_trio as pt

from ._atomic import replacing
from ._endpoints import endpoint_of, endpoint_request, response_of
from ._text import dumps, loads, write_atomic

__all__ = [
    "InputLine",
    "Manifest",
    "read_input",
    "read_done",
    "result_record",
    "invalid_record",
    "scan_input",
]

_EMBEDDING_FIELDS = frozenset({"model", "dimensions", "encoding_format"})
_REQUEST_FIELDS = frozenset(
    {"model", "messages", "temperature", "max_tokens", "top_p", "stop", "seed",
     "presence_penalty", "frequency_penalty", "n"}
)  # fmt: skip
_JSON_SCHEMA_KEYS = frozenset({"name", "schema", "strict"})


class InputError(Exception):
    """The input file as a whole cannot be used (exit code 2)."""


@dataclass(frozen=True, slots=True)
class InputLine:
    """One line of the input: a request, or why the line is not one."""

    line: int
    custom_id: str
    request: Any
    problem: str | None = None


def _request_from(obj: Mapping[str, Any], custom_id: str) -> Any:
    if "body" in obj or "method" in obj or "url" in obj:
        method = obj.get("method", "POST")
        if method != "POST":
            raise ValueError(f"method must be POST, got {method!r}")
        endpoint = endpoint_of(obj.get("url", "/v1/chat/completions"))
        body = obj.get("body")
        if not isinstance(body, Mapping):
            raise ValueError("'body' must be a JSON object")
        if endpoint == "/embeddings":
            return _embedding_request(body, custom_id)
        if endpoint != "/chat/completions":
            return endpoint_request(endpoint, body, custom_id)
    else:
        body = {k: v for k, v in obj.items() if k != "custom_id"}
        if "input" in body and "messages" not in body:
            return _embedding_request(body, custom_id)
    if "messages" not in body:
        raise ValueError("no 'messages'")
    if body.get("stream"):
        raise ValueError("'stream' is not supported in batch files")
    fields = {k: v for k, v in body.items() if k in _REQUEST_FIELDS}
    extra = {k: v for k, v in body.items() if k not in _REQUEST_FIELDS and k != "stream"}
    messages = fields.pop("messages")
    if not isinstance(messages, list):
        raise ValueError("'messages' must be a list")
    if isinstance(fields.get("stop"), list):
        fields["stop"] = tuple(fields["stop"])
    output = _output_of(extra)
    tools = {k: extra.pop(k) for k in ("tools", "tool_choice") if k in extra}
    try:  # typed, so that the answer's tool calls are checked against them
        return pt.ChatRequest(
            messages=tuple(messages), extra=extra, custom_id=custom_id, output=output,
            **fields, **tools,
        )  # fmt: skip
    except pt.InvalidRequestError:
        if not tools:
            raise
    # Tools this library cannot type (another kind of tool, a schema that is no JSON
    # Schema...) are sent as they are, and the answer's calls are not checked.
    return pt.ChatRequest(
        messages=tuple(messages), extra={**extra, **tools}, custom_id=custom_id,
        output=output, validate_tool_calls=False, **fields,
    )  # fmt: skip


def _output_of(extra: dict[str, Any]) -> pt.OutputSchema | None:
    """The structured output a body asks for (``response_format`` with a JSON Schema, or
    ``guided_json``), taken out of ``extra`` so that the answer is validated and parsed;
    ``None`` when it asks for none, or in a form sent as it is."""
    response_format = extra.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        if (
            "guided_json" not in extra
            and set(response_format) == {"type", "json_schema"}
            and isinstance(spec, Mapping)
            and isinstance(spec.get("schema"), Mapping)
            and set(spec) <= _JSON_SCHEMA_KEYS
        ):
            del extra["response_format"]
            return pt.OutputSchema(
                spec["schema"], name=spec.get("name") or "", strict=spec.get("strict")
            )
    guided = extra.get("guided_json")
    if isinstance(guided, Mapping) and "response_format" not in extra:
        del extra["guided_json"]
        return pt.OutputSchema(guided, form="guided_json")
    return None


def _embedding_request(body: Mapping[str, Any], custom_id: str) -> pt.EmbeddingRequest:
    if "input" not in body:
        raise ValueError("no 'input'")
    fields = {k: v for k, v in body.items() if k in _EMBEDDING_FIELDS}
    extra = {k: v for k, v in body.items() if k not in _EMBEDDING_FIELDS and k != "input"}
    return pt.EmbeddingRequest(inputs=body["input"], extra=extra, custom_id=custom_id, **fields)


def read_input(path: Path) -> Iterator[InputLine]:
    """Yield every non-blank line of ``path`` as an :class:`InputLine`, lazily.

    Duplicate ``custom_id``s (the later ones) and invalid lines come back with a
    ``problem``.  Every line gets an id unique in the file: lines without a usable one get
    ``line-N`` (``~`` appended while that is taken) and duplicates ``ID#line-N``, so the
    output holds exactly one record per line and a resume skips exactly the lines done.
    Only the ids are kept in memory, not the requests.
    """
    seen: set[str] = set()

    def fresh(candidate: str) -> str:
        # An id for a line without a usable one, unlike every id given so far.
        while candidate in seen:
            candidate += "~"
        seen.add(candidate)
        return candidate

    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                # NaN and Infinity are read, so that the request (which refuses them,
                # naming the field) is the line's problem, under its own custom_id.
                obj = loads(raw, allow_nan=True)
            except (ValueError, UnicodeDecodeError) as exc:
                yield InputLine(number, fresh(f"line-{number}"), None, f"invalid JSON: {exc}")
                continue
            if not isinstance(obj, dict):
                yield InputLine(number, fresh(f"line-{number}"), None, "not a JSON object")
                continue
            custom_id = obj.get("custom_id")
            if custom_id is None:
                custom_id = fresh(f"line-{number}")
            elif not isinstance(custom_id, str) or not custom_id:
                yield InputLine(
                    number, fresh(f"line-{number}"), None, "custom_id must be a non-empty string"
                )
                continue
            elif custom_id in seen:
                yield InputLine(
                    number, fresh(f"{custom_id}#line-{number}"), None,
                    f"duplicate custom_id {custom_id!r} (an earlier line has it, or it is "
                    "the id given to an earlier line without one)",
                )  # fmt: skip
                continue
            else:
                seen.add(custom_id)
            try:
                request = _request_from(obj, custom_id)
            except ValueError as exc:  # InvalidRequestError among them
                yield InputLine(number, custom_id, None, f"invalid request: {exc}")
                continue
            except Exception as exc:  # whatever else: this line's problem, not the run's
                problem = f"invalid request: {type(exc).__name__}: {exc}"
                yield InputLine(number, custom_id, None, problem)
                continue
            yield InputLine(number, custom_id, request)


def read_done(path: Path, *, keep_failed: bool) -> tuple[set[str], int]:
    """The ``custom_id``s already in an output file, repairing it for a resume.

    A half-written last line (a crash mid-write) is cut off.  With ``keep_failed=False``
    (``--retry-failed``) the failed records are removed from the file so that they are
    run again.  The file is rewritten atomically (see :func:`replacing`), and only if
    it did not grow meanwhile (it cannot under the run's lock; another program writing
    it gets :class:`InputError` rather than lost records).  Returns the ids kept and
    how many records were dropped.
    """
    if not path.exists():
        return set(), 0
    done, dropped, needs_rewrite = _usable(_records(path), keep_failed)
    if needs_rewrite:
        done, dropped = _rewrite(path, keep_failed)
    return done, dropped


def _usable(
    records: Iterator[tuple[bytes, str | None, bool]], keep_failed: bool
) -> tuple[set[str], int, bool]:
    """The ids to keep, the records to drop, and whether any line is to go."""
    done: set[str] = set()
    dropped = 0
    needs_rewrite = False
    for _line, custom_id, failed in records:
        if custom_id is None or (failed and not keep_failed):
            needs_rewrite = True
            dropped += custom_id is not None
            continue
        done.add(custom_id)
    return done, dropped, needs_rewrite


def _records(path: Path) -> Iterator[tuple[bytes, str | None, bool]]:
    """(line, custom_id or None when unusable, failed) of each line; streams the file."""
    with path.open("rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                yield line, None, False  # a half-written last line
                continue
            try:
                rec = loads(line)
                custom_id = rec["custom_id"]
                failed = rec.get("error") is not None
            except (ValueError, KeyError, TypeError):
                yield line, None, False
                continue
            yield line, str(custom_id), failed


def _rewrite(path: Path, keep_failed: bool) -> tuple[set[str], int]:
    """Replace ``path`` by its usable records (less the failed ones unless ``keep_failed``);
    the ids kept and the records dropped."""
    read = 0

    def copied(out: IO[bytes]) -> Iterator[tuple[bytes, str | None, bool]]:
        # Every record, passed on; the usable ones written to ``out``.
        nonlocal read
        for line, custom_id, failed in _records(path):
            read += len(line)
            if custom_id is not None and not (failed and not keep_failed):
                out.write(line)
            yield line, custom_id, failed

    with replacing(path) as new:
        done, dropped, _ = _usable(copied(new), keep_failed)
        if path.stat().st_size != read:
            raise InputError(
                f"{path} changed while it was being rewritten (is another program writing "
                "it?); it was left as it was"
            )
    return done, dropped


def _record_id(custom_id: str) -> str:
    # ``surrogatepass``: an id holding a lone surrogate (from a ``\\ud800`` escape in the
    # input) has a record too.
    return (
        "batch_req_" + hashlib.sha256(custom_id.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    )


def response_body(answer: Any, request: Any = None) -> dict[str, Any]:
    """The body of a success record: the answer as the server sent it (for a request
    packed with others, its part).

    The client receives embeddings as base64; a line that did not ask for base64 gets
    JSON numbers, as the API would have sent it.
    """
    body = dict(answer.raw)
    if isinstance(answer, pt.Embeddings):
        base64 = isinstance(request, pt.EmbeddingRequest) and request.encoding_format == "base64"
        if not base64:
            body["data"] = [{**e.raw, "embedding": list(e.vector)} for e in answer.data]
    return body


def result_record(custom_id: str, completion: Any, error: BaseException | None,
                  attempts: int, elapsed: float,
                  request: Any = None) -> dict[str, Any]:  # fmt: skip
    """One output record for a finished request (``completion``: its answer, a chat
    completion or embeddings)."""
    response: dict[str, Any] | None = None
    err: dict[str, Any] | None = None
    parsed: dict[str, Any] = {}
    if completion is not None and not isinstance(completion, pt.ChatCompletion | pt.Embeddings):
        body, request_id = response_of(completion)  # another endpoint's answer
        response = {"status_code": 200, "request_id": request_id, "body": body}
    elif completion is not None:
        answer: Any = completion
        response = {
            "status_code": 200,
            "request_id": completion.request_id,
            "body": response_body(completion, request),
        }
        if getattr(request, "output", None) is not None:
            parsed["parsed"] = answer.parsed
    elif error is not None:
        if isinstance(error, pt.APIStatusError):
            response = {
                "status_code": error.status_code,
                "request_id": error.request_id,
                "body": error.body,
            }
        elif (
            isinstance(error, pt.StructuredOutputError | pt.ToolCallError)
            and error.completion is not None
        ):
            response = {
                "status_code": 200,
                "request_id": error.request_id,
                "body": dict(error.completion.raw),
            }
        code = (
            "cancelled" if isinstance(error, pt.RequestCancelled)
            else getattr(error, "code", None) or type(error).__name__
        )  # fmt: skip
        message = str(error)
        notes = getattr(error, "__notes__", None)
        if notes:
            message += " (" + "; ".join(notes) + ")"
        err = {"code": code, "message": message}
    return {
        "id": _record_id(custom_id),
        "custom_id": custom_id,
        "response": response,
        **parsed,
        "error": err,
        "attempts": attempts,
        "elapsed": round(elapsed, 4),
    }


def invalid_record(item: InputLine) -> dict[str, Any]:
    """The output record of an input line that is not a valid request."""
    return {
        "id": _record_id(item.custom_id),
        "custom_id": item.custom_id,
        "response": None,
        "error": {"code": "invalid_request", "message": f"line {item.line}: {item.problem}"},
        "attempts": 0,
        "elapsed": 0.0,
    }


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One record as a line of UTF-8 JSON.

    Text is written as it is, except a lone surrogate (a ``custom_id`` or a message holding
    one, from a ``\\ud800`` escape in the input or a server's answer), which UTF-8 cannot
    hold: it is written as that JSON escape, which reads back as the same string, so a
    resume recognises the id.
    """
    return dumps(record, separators=(",", ":")).encode("utf-8") + b"\n"


def result_line(custom_id: str, completion: Any, error: BaseException | None,
                attempts: int, elapsed: float, request: Any = None,
                annotate: Callable[[dict[str, Any]], None] | None = None) -> bytes:  # fmt: skip
    """The output line of a finished request (:func:`result_record`, then ``annotate``d
    with the run's own fields, encoded).

    A result that cannot be recorded as it is (a bug) still gets its line, an error record
    saying so, which ``--retry-failed`` runs again: it never stops the run.
    """
    try:
        record = result_record(custom_id, completion, error, attempts, elapsed, request)
        if annotate is not None:
            annotate(record)
        return encode_record(record)
    except Exception as exc:
        message = f"the result could not be recorded ({type(exc).__name__}: {exc})"
        return encode_record(
            {
                "id": _record_id(custom_id),
                "custom_id": custom_id,
                "response": None,
                "error": {"code": "record_error", "message": message},
                "attempts": attempts,
                "elapsed": round(elapsed, 4),
            }
        )


def write_line(out: IO[bytes], line: bytes) -> None:
    """Append one line as a single write, flushed (a crash leaves at most a partial line)."""
    out.write(line)
    out.flush()


def write_record(out: IO[bytes], record: Mapping[str, Any]) -> None:
    """Append one record (see :func:`write_line`)."""
    write_line(out, encode_record(record))


def _is_binary(raw: bytes) -> bool:
    """Whether a line holds a NUL byte or bytes that are not UTF-8 (as JSON decodes it)."""
    if b"\0" in raw:
        return True
    try:
        raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return True
    return False


_JSON_KINDS = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}


def _first_line_problem(raw: bytes) -> str | None:
    """Why the first non-blank line shows the file is not JSONL, if it does."""
    if _is_binary(raw):
        return "holds binary data (a NUL byte or bytes that are not UTF-8)"
    try:
        obj = loads(raw, allow_nan=True)
    except ValueError as exc:
        return f"is not JSON ({exc})"
    if not isinstance(obj, dict):
        return f"is {_JSON_KINDS.get(type(obj), 'a number')}, not a JSON object"
    return None


def scan_input(path: Path) -> tuple[str, int]:
    """The input's SHA-256 and number of non-blank lines, in one streaming pass.

    Raises :class:`InputError` if the file is not JSONL at all: its first non-blank line
    is not a JSON object, or more than half of its non-blank lines hold binary data.  A
    JSONL file with a few bad lines passes: they become error records one by one.
    """
    digest = hashlib.sha256()
    lines = binary = 0
    first: tuple[int, bytes] | None = None
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            digest.update(raw)
            if not raw.strip():
                continue
            lines += 1
            binary += _is_binary(raw)
            if first is None:
                first = number, raw
    problem = None if first is None else _first_line_problem(first[1])
    if first is not None and problem is not None:
        raise InputError(
            f"{path} is not a JSONL file of requests: its first line (line {first[0]}) "
            f"{problem}; each line must be one JSON object"
        )
    if binary * 2 > lines:
        raise InputError(
            f"{path} is not a JSONL file of requests: {binary} of its {lines} lines hold "
            "binary data (NUL bytes or bytes that are not UTF-8)"
        )
    return digest.hexdigest(), lines


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a resume must match: the input's hash and the settings that shape the output."""

    input_sha256: str
    input_name: str
    settings: Mapping[str, Any]

    @staticmethod
    def path_for(output: Path) -> Path:
        return output.with_name(output.name + ".manifest.json")

    def save(self, output: Path) -> None:
        data = {"input_sha256": self.input_sha256, "input": self.input_name,
                "settings": dict(self.settings), "version": 1}  # fmt: skip
        write_atomic(self.path_for(output), dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, output: Path) -> Manifest | None:
        path = cls.path_for(output)
        if not path.exists():
            return None
        try:
            data = loads(path.read_bytes())
            return cls(data["input_sha256"], data.get("input", ""), data.get("settings", {}))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"the manifest {path} is unreadable ({exc}); delete it to start over"
            ) from None
