"""paradigm-trio: a trio-native batch client for LightOn's Paradigm API.

Everything public is re-exported here; the ``_*`` modules are private.
"""

from __future__ import annotations

import contextlib

from ._client._client import Client, ClientState, instrument
from ._client._embedder import EmbeddingResult, EmbeddingResults, EmbeddingStream
from ._config import DEFAULT_BASE_URL, DEFAULT_MODEL, Limits, RedisQuota, RetryPolicy, Timeouts
from ._doctor import CheckStep, ConnectionCheck, check_connection
from ._endpoints._chat_kind import BatchResult, BatchResults, BatchStream
from ._endpoints._completion import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    Message,
    ModelInfo,
    Usage,
)
from ._endpoints._embeddings import (
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_PACK_INPUTS,
    DEFAULT_PACK_TOKENS,
    MAX_EMBEDDING_INPUTS,
    Embedding,
    EmbeddingRequest,
    Embeddings,
)
from ._endpoints._logprobs import ChoiceLogprobs, TokenLogprob, TopLogprob
from ._endpoints._models import ChatRequest
from ._endpoints._streaming import ChatStream
from ._endpoints._structured import OutputSchema
from ._endpoints._tools import FunctionCall, ToolCall, function_tool
from ._engine._batch_options import BatchOptions, BatchStatistics
from ._engine._cache import DEFAULT_CACHE_TTL, ResponseCache
from ._engine._hedge import Hedge
from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchError,
    CertificateVerificationError,
    ConfigurationError,
    ConflictError,
    IncompleteStreamError,
    InternalServerError,
    InvalidRequestError,
    NotFoundError,
    ParadigmError,
    PermissionDeniedError,
    ProxyError,
    QuotaUnavailableError,
    RateLimitError,
    RequestCancelled,
    ServerUnreachableError,
    StructuredOutputError,
    UnprocessableEntityError,
)
from ._events import (
    Attempt,
    AttemptFailed,
    AttemptStarted,
    ClientStatistics,
    Event,
    RateLimited,
    RequestFinished,
    RetryScheduled,
    SharedQuotaRestored,
    SharedQuotaUnavailable,
    StreamEndedWithoutDone,
)
from ._frames import embeddings_array, results_frame
from ._quota._redis_store import QuotaState, quota_state
from ._sync import BatchInterrupted, SyncClient
from ._sync_streams import SyncBatchStream, SyncChatStream
from ._transport import TrioTransport, system_trust_store
from ._version import __version__

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "Attempt",
    "AttemptFailed",
    "AttemptStarted",
    "AuthenticationError",
    "BadRequestError",
    "BatchError",
    "BatchInterrupted",
    "BatchOptions",
    "BatchResult",
    "BatchResults",
    "BatchStatistics",
    "BatchStream",
    "CertificateVerificationError",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatRequest",
    "ChatStream",
    "CheckStep",
    "Choice",
    "ChoiceLogprobs",
    "Client",
    "ClientState",
    "ClientStatistics",
    "ConfigurationError",
    "ConflictError",
    "ConnectionCheck",
    "DEFAULT_BASE_URL",
    "DEFAULT_CACHE_TTL",
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_MODEL",
    "DEFAULT_PACK_INPUTS",
    "DEFAULT_PACK_TOKENS",
    "Embedding",
    "EmbeddingRequest",
    "EmbeddingResult",
    "EmbeddingResults",
    "EmbeddingStream",
    "Embeddings",
    "Event",
    "FunctionCall",
    "Hedge",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidRequestError",
    "Limits",
    "MAX_EMBEDDING_INPUTS",
    "Message",
    "ModelInfo",
    "NotFoundError",
    "OutputSchema",
    "ParadigmError",
    "PermissionDeniedError",
    "ProxyError",
    "QuotaState",
    "QuotaUnavailableError",
    "RateLimitError",
    "RateLimited",
    "RedisQuota",
    "RequestCancelled",
    "RequestFinished",
    "ResponseCache",
    "RetryPolicy",
    "RetryScheduled",
    "ServerUnreachableError",
    "SharedQuotaRestored",
    "SharedQuotaUnavailable",
    "StreamEndedWithoutDone",
    "StructuredOutputError",
    "SyncBatchStream",
    "SyncChatStream",
    "SyncClient",
    "Timeouts",
    "TokenLogprob",
    "ToolCall",
    "TopLogprob",
    "TrioTransport",
    "UnprocessableEntityError",
    "Usage",
    "__version__",
    "check_connection",
    "embeddings_array",
    "function_tool",
    "instrument",
    "quota_state",
    "results_frame",
    "system_trust_store",
]


def _fix_module_names() -> None:
    # Show ``paradigm_trio.Client`` rather than ``paradigm_trio._client.Client`` in
    # reprs, tracebacks and the docs (as trio does).
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("paradigm_trio._"):
            with contextlib.suppress(AttributeError, TypeError):  # e.g. type aliases
                obj.__module__ = __name__


_fix_module_names()
del _fix_module_names
