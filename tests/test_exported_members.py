"""Keep ``paradigm_trio.__all__`` honest: sorted, complete, every name real, tidy ``__module__``.

The public API lives in private modules (``_client.py``, ``_errors.py``, ...) and is
re-exported from ``paradigm_trio/__init__.py``.  Every name a private module lists in its own
``__all__`` must be re-exported, unless it is listed in :data:`INTERNAL` below: names that
other private modules import but that users should not (parsers, machinery).  Adding to
``INTERNAL`` is a decision about the public API; make it on purpose.
"""

from __future__ import annotations
import __future__

import importlib
import importlib.metadata
import pkgutil
import types

import pytest

import paradigm_trio

INTERNAL: dict[str, frozenset[str]] = {
    # fewer_collections' default (its signature shows it).
    "paradigm_trio._gc": frozenset({"GEN0_THRESHOLD"}),
    # The attempt engine and its parts: what every request kind runs on.
    "paradigm_trio._engine._attempts": frozenset(
        {"Attempting", "Call", "Engine", "Plan", "idempotency_key"}
    ),
    "paradigm_trio._engine._attempting": frozenset({"Attempting"}),
    "paradigm_trio._engine._ledger": frozenset(
        {"CANCELLED", "Ledger", "Observer", "Tokens", "one_line"}
    ),
    # The one retry decision.
    "paradigm_trio._engine._retry": frozenset(
        {"INVALID_ANSWER", "UNPROCESSED", "allows", "delay_before_next", "not_resent", "resendable"}
    ),
    # The endpoint protocol (plain and streamed), the one send path, and the endpoints.
    "paradigm_trio._endpoints._endpoint": frozenset(
        {
            "Endpoint",
            "FollowUp",
            "Reader",
            "Request",
            "Sender",
            "Stored",
            "StreamingEndpoint",
            "close_response",
            "identity",
            "reparse",
            "stored",
            "through_cache",
        }
    ),
    # The response cache's open store, its busy timeout.
    "paradigm_trio._engine._cache": frozenset({"CacheStore"}),
    "paradigm_trio._engine._repeats": frozenset({"Repeats"}),
    "paradigm_trio._engine._results": frozenset({"Outcome", "ResultStream"}),
    "paradigm_trio._engine._hedge": frozenset(
        {"DEFAULT_HEDGE", "Hedger", "SendOne", "hedger_for", "race"}
    ),
    # A batch's identical requests sent once (its book, the identity of a request).
    "paradigm_trio._engine._dedupe": frozenset(
        {
            "DEDUPE_MODES",
            "DEDUPE_WAITING",
            "DEDUPE_WINDOW",
            "Dedupe",
            "DedupeMode",
            "Identity",
            "shared",
        }
    ),
    "paradigm_trio._endpoints._chat": frozenset({"ChatEndpoint"}),
    "paradigm_trio._engine._budget": frozenset(
        {"DEFAULT_UNREACHABLE_AFTER", "RETRY_FLOOR", "RETRY_RESERVE", "BatchControl"}
        | {"HOLD", "PASS", "RELEASE", "STOP"}  # BatchControl.judge's verdicts
    ),
    # The HTTP layer: one send path; one exception mapping and one error builder (``Failures``,
    # which ``HTTP`` inherits).
    "paradigm_trio._http._http": frozenset(
        {"HTTP", "Exchange", "JsonAttempt", "Responder", "Upload"}
    ),
    "paradigm_trio._http._failures": frozenset(
        {"Failures", "RAW_LIMIT", "may_have_reached", "parse_retry_after", "parse_should_retry"}
    ),
    # Rate-limit machinery behind ``Limits``; users configure it through ``Limits``.
    "paradigm_trio._engine._ratelimit": frozenset(
        {
            "AdaptiveController",
            "CLUSTER_HALF_LIFE",
            "CLUSTER_MIN",
            "CLUSTER_SHARE",
            "RateLimiter",
            "RateLimiterStatistics",
            "Rates",
            "RecentShare",
            "SendMark",
            "TokenBucket",
            "parse_duration",
            "tally_wait",
        }
    ),
    # The shared quota's machinery behind ``Limits(shared=RedisQuota(...))``.
    "paradigm_trio._quota._redis_store": frozenset(
        {"LUA", "Learnt", "Store", "Taken", "Update", "unwrapped"}
    ),
    "paradigm_trio._quota._shared": frozenset(
        {"BACKOFF_MAX", "BACKOFF_MIN", "FLUSH_DELAY", "SharedRateLimiter"}
    ),
    # The batch engine behind every batch method, and the chat completions' kind (the
    # implementation of ``Client.stream_batch``); the options' defaults and types.
    "paradigm_trio._engine._batch": frozenset(
        {"Kind", "Outcome", "ResultStream", "SendOne", "WarmUp", "run_batch"}
    ),
    # One item's send as a batch sees it (never an exception).
    "paradigm_trio._engine._settle": frozenset({"Sent", "outcome_of", "settle"}),
    "paradigm_trio._endpoints._chat_kind": frozenset({"ChatKind", "stream_batch"}),
    # The client's state and batch collection; its configuration checks.
    "paradigm_trio._client._core": frozenset({"PlanOf", "check_trio", "collect"}),
    "paradigm_trio._client._chat_batches": frozenset({"ChatBatches"}),
    "paradigm_trio._client._embedder": frozenset({"Embedder"}),
    "paradigm_trio._client._setup": frozenset(
        {
            "API_KEY_ENV",
            "BASE_URL_ENV",
            "cache_of",
            "check_base_url",
            "check_http",
            "check_key",
            "check_models",
            "engine_of",
            "http_of",
            "transport_of",
        }
    ),
    # Embeddings batches: the batch kind behind ``Client.embed_batch``, and packing.
    "paradigm_trio._endpoints._embedding_kind": frozenset(
        {"EmbedInput", "EmbeddingKind", "EmbeddingLists", "check_pack", "embedding_defaults"}
    ),
    "paradigm_trio._endpoints._embeddings": frozenset(
        {
            "EmbeddingsEndpoint",
            "EncodingFormat",
            "join",
            "joins",
            "merge",
            "singles",
            "split",
            "usage_of_embeddings",
        }
    ),
    "paradigm_trio._engine._batch_options": frozenset(
        {"DEFAULT_CIRCUIT_BREAKER", "DEFAULT_RETRY_BUDGET", "BatchKeywords", "OnError"}
    ),
    # SSE parsing and stream reading behind ``Client.chat_stream`` (``SSEDecodeError``
    # never escapes them).
    "paradigm_trio._endpoints._sse": frozenset(
        {"DEFAULT_MAX_EVENT_SIZE", "SSEDecodeError", "SSEDecoder", "ServerSentEvent"}
    ),
    "paradigm_trio._endpoints._chunks": frozenset({"DRAIN_GRACE", "StreamReader"}),
    # Keeping credentials out of what users see: the key's checks, redaction, URL masking
    # (the rules and the minimum key length are documented in docs/security.md).
    # The masks behind ``mask_credentials`` (public), beneath ``_config`` and ``_redact``.
    "paradigm_trio._credentials": frozenset({"MASK", "QUERY_SECRETS", "mask_bad_url"}),
    "paradigm_trio._redact": frozenset(
        {"MIN_API_KEY_LENGTH", "Redactor", "check_api_key", "mask_bad_url"}
    ),
    # Proxy routing and TLS settings behind ``Client(proxy=, verify=, cert=, trust_env=)``;
    # the transport's own failures, which ``_http`` maps to ``ProxyError`` and
    # ``CertificateVerificationError``.
    "paradigm_trio._transport._proxies": frozenset({"ProxyRoute", "ProxyRules", "ProxyTypes"}),
    "paradigm_trio._transport._tls": frozenset(
        {"CertTypes", "VerifyTypes", "check_environment", "describe_verify", "ssl_context"}
    ),
    # One hop each (TCP, TLS, CONNECT) and the transport's own failures.
    "paradigm_trio._transport._dial": frozenset(
        {"ProxyRefused", "Report", "TLSConnectError", "authority"}
    )
    | {"Connect", "InvalidHostName", "open_tcp", "quiet", "start_tls", "tunnel"},
    # Host names that cannot be looked up, refused with the reason (by ``Client``, the
    # proxy rules and the transport).
    "paradigm_trio._transport._hostname": frozenset({"MAX_LABEL", "host_problem", "url_host"}),
    "paradigm_trio._doctor": frozenset({"CHECK_TIMEOUTS"}),
    # Paradigm's own endpoints: the request protocol and answer readers, the endpoints'
    # batch kind, the client's methods; and the checks the endpoint modules share.
    "paradigm_trio._endpoints._json_endpoint": frozenset(
        {
            "EndpointRequest",
            "JsonEndpoint",
            "check_text",
            "given_fields",
            "int_list",
            "obj",
            "opt_int",
            "opt_number",
            "opt_str",
            "req_list",
        }
    ),
    "paradigm_trio._endpoints._endpoint_kind": frozenset({"EndpointKind", "run_endpoints"}),
    # Where any request goes (the client's ``Router``) and the helpers of its batches.
    "paradigm_trio._client._paradigm": frozenset(
        {"AnyRequest", "Router", "as_any", "check_request", "collected"}
        | {"query_maker", "tokenize_maker"}
    ),
    "paradigm_trio._endpoints._query": frozenset({"check_n", "parse_chunks"}),
    "paradigm_trio._endpoints._files": frozenset({"parse_deleted", "parse_page"}),
    # The transport's keep-alive pool and its DNS cache (``TrioTransport.warm_up`` fills
    # the pool; ``DNS_TTL`` is documented in docs/howto-enterprise-networks.md).
    "paradigm_trio._transport._pool": frozenset({"Connection", "Origin", "Pool"}),
    "paradigm_trio._transport._resolve": frozenset(
        {"DNS_TTL", "HAPPY_EYEBALLS_DELAY", "Resolver", "is_address"}
    ),
    # The fast lane (``_http`` writes requests for ``TrioTransport.fetch``).
    "paradigm_trio._transport._lane": frozenset({"FastLane", "header_map"}),
    "paradigm_trio._transport._transport": frozenset(
        {"Answering", "Origin", "WireTimeouts", "origin_of"}
    ),
    # One exchange on a connection: writing the request, reading and parsing the answer.
    "paradigm_trio._transport._exchange": frozenset(
        {
            "INLINE_BODY",
            "READ_SIZE",
            "WireTimeouts",
            "closed_unsent",
            "exchange",
            "receive",
            "response_head",
            "write",
            "write_small",
            "write_unsent",
        }
    ),
    # Small requests written together by one writer task per run.
    "paradigm_trio._transport._outbox": frozenset({"post"}),
    # Answer waits in one epoll of our own per trio run, and the task that watches it.
    "paradigm_trio._transport._poller": frozenset(
        {"CLOSED", "READY", "TIMED_OUT", "WOKEN", "arm", "wake"}
    ),
    # Timed waits on a socket, kept by one watcher task instead of a cancel scope each.
    "paradigm_trio._transport._waits": frozenset(
        {"Deadlines", "end_wait", "start_wait", "system_task", "wait_readable", "wait_scoped"}
    ),
    # HTTP/1.1 messages for the transport and the proxy tunnel.
    "paradigm_trio._transport._wire": frozenset(
        {"ProtocolError", "ResponseReader", "check_header", "request_head"}
    ),
    # Fast constructors of the library's frozen records, for its own use.
    "paradigm_trio._records": frozenset({"builder"}),
    # The ``paradigm_trio`` logger and its messages (documented in the reference).
    "paradigm_trio._log": frozenset({"PROGRESS_INTERVAL", "logger", "say"}),
    # OpenTelemetry (``pt.instrument``): imported only when a client is instrumented.
    "paradigm_trio._client._otel": frozenset({"DEFAULT_PROVIDER_NAME", "SCHEMA_URL", "Telemetry"}),
    # The chat request's checks (shared with embeddings); ``make_request`` is
    # ``Client.make_request`` without a client.
    "paradigm_trio._endpoints._models": frozenset(
        {
            "ChatOptions",
            "check_custom_id",
            "check_model",
            "check_positive",
            "checked_extra",
            "make_request",
            "sealed_request",
        }
    ),
    # Every request body's JSON encoder (Paradigm's own JSON endpoints call it).
    "paradigm_trio._endpoints._encode": frozenset({"encode_json"}),
    # The fast lane's signal to the engine: the attempt's deadline passed in its waits.
    "paradigm_trio._config": frozenset({"AttemptTimedOut"}),
    # The answer's parsers, for the engine and the stream.
    "paradigm_trio._endpoints._completion": frozenset({"checked_output", "completion_parser"}),
    # Tool calls, structured outputs, log probabilities: checks, parsers, stream assembly.
    "paradigm_trio._endpoints._tools": frozenset(
        {
            "ModelSchema",
            "ToolCallAssembler",
            "checked_tool_choice",
            "checked_tools",
            "json_schema_of",
            "parse_tool_calls",
        }
    ),
    "paradigm_trio._endpoints._pace": frozenset({"StallWatch"}),
    "paradigm_trio._endpoints._resume": frozenset(
        {"DIVERGED", "Diverged", "Restart", "Resume", "continuation"}
    ),
    "paradigm_trio._endpoints._structured": frozenset(
        {"OutputForm", "ToolCallRules", "scrub_output_error"}
    ),
    # The checks of the numbers in an answer, which every parser calls.
    "paradigm_trio._numbers": frozenset({"MAX_WHOLE", "finite", "finite_floats", "whole"}),
    "paradigm_trio._endpoints._logprobs": frozenset({"parse_logprobs"}),
    "paradigm_trio._endpoints._assembly": frozenset({"CompletionAssembler"}),
    # The transport's one entry: what the rest of the package may import from it.
    "paradigm_trio._transport": frozenset(
        {
            "Answering",
            "CertTypes",
            "FastLane",
            "InvalidHostName",
            "Origin",
            "ProxyRefused",
            "ProxyRoute",
            "ProxyTypes",
            "TLSConnectError",
            "VerifyTypes",
            "describe_verify",
            "header_map",
            "host_problem",
            "is_address",
            "origin_of",
            "url_host",
        }
    ),
    # Raised by attempt functions, caught by the engine: never escapes the library.
    "paradigm_trio._attempt_failure": frozenset({"AttemptFailure"}),
    # SyncClient's trio loop on a thread of its own, and the bridge its callers cross.
    "paradigm_trio._loop": frozenset({"CANCEL_WAIT", "Job", "Loop", "Pipe"}),
}


def _private_modules() -> list[str]:
    """Every private module, those of the layers' subpackages and their entries included."""
    return sorted(
        info.name
        for info in pkgutil.walk_packages(paradigm_trio.__path__, "paradigm_trio.")
        if info.name.rpartition(".")[2].startswith("_")
        and not info.name.rpartition(".")[2].startswith("__")
        and not info.name.startswith("paradigm_trio.cli")
    )


PRIVATE_MODULES = _private_modules()


def test_all_is_sorted() -> None:
    assert paradigm_trio.__all__ == sorted(paradigm_trio.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(paradigm_trio.__all__) == len(set(paradigm_trio.__all__))


def test_every_name_in_all_exists() -> None:
    missing = [name for name in paradigm_trio.__all__ if not hasattr(paradigm_trio, name)]
    assert missing == []


def test_private_modules_are_found() -> None:
    for name in (
        "_engine._attempts",
        "_client._client",
        "_config",
        "_errors",
        "_events",
        "_http._http",
        "_endpoints._models",
        "_transport",
        "_transport._transport",
    ):
        assert f"paradigm_trio.{name}" in PRIVATE_MODULES


@pytest.mark.parametrize("module_name", PRIVATE_MODULES)
def test_private_module_exports_are_reexported(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{module_name} has no __all__"
    assert list(exported) == sorted(exported), f"{module_name}.__all__ is not sorted"
    internal = INTERNAL.get(module_name, frozenset())
    assert internal <= set(exported), f"stale INTERNAL entries for {module_name}"
    missing = sorted(set(exported) - internal - set(paradigm_trio.__all__))
    assert missing == [], f"{module_name} exports names paradigm_trio does not re-export"
    for name in set(exported) - internal:
        assert getattr(paradigm_trio, name, None) is getattr(module, name), name


def test_no_public_name_is_left_out_of_all() -> None:
    public = {
        name
        for name, value in vars(paradigm_trio).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType | __future__._Feature)
    }
    assert sorted(public - set(paradigm_trio.__all__)) == []


def test_public_classes_claim_the_package_as_their_module() -> None:
    wrong = {
        name: obj.__module__
        for name in paradigm_trio.__all__
        if isinstance(obj := getattr(paradigm_trio, name), type | types.FunctionType)
        and obj.__module__ != "paradigm_trio"
    }
    assert wrong == {}


def test_version_matches_the_distribution() -> None:
    assert paradigm_trio.__version__ == importlib.metadata.version("paradigm-trio")
