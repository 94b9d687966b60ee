"""paradigm-trio: a trio-native batch client for LightOn's Paradigm API.

Everything public is re-exported here; the ``_*`` modules are private.
"""

from __future__ import annotations

import contextlib

from ._client._client import Client, ClientState
from ._client._files_api import Files
from ._client._instrument import instrument
from ._config import DEFAULT_BASE_URL, DEFAULT_MODEL, Limits, RedisQuota, RetryPolicy, Timeouts
from ._credentials import mask_credentials
from ._diagnosis import Diagnosis, SystematicFailureError, diagnose
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
from ._endpoints._document_search import (
    DocumentAnswer,
    DocumentSearchRequest,
    Extract,
    SourceDocument,
)
from ._endpoints._embedding_kind import EmbeddingResult, EmbeddingResults, EmbeddingStream
from ._endpoints._embeddings import (
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_PACK_INPUTS,
    DEFAULT_PACK_TOKENS,
    MAX_EMBEDDING_INPUTS,
    Embedding,
    EmbeddingRequest,
    Embeddings,
)
from ._endpoints._endpoint_kind import EndpointResult, EndpointResults, EndpointStream
from ._endpoints._files import FAILED_STATUSES, PROCESSED_STATUSES, FileInfo, FileUpload
from ._endpoints._filter_chunks import FilteredChunks, FilterRequest
from ._endpoints._logprobs import ChoiceLogprobs, TokenLogprob, TopLogprob
from ._endpoints._models import ChatRequest
from ._endpoints._query import Chunk, QueryRequest, QueryResult
from ._endpoints._streaming import ChatStream
from ._endpoints._structured import OutputSchema
from ._endpoints._text_completion import CompletionRequest, TextCompletion
from ._endpoints._threads import Turn, TurnRequest
from ._endpoints._tokenize import TokenCount, TokenizeRequest
from ._endpoints._tools import FunctionCall, ToolCall, function_tool
from ._engine._batch_options import DEFAULT_SYSTEMATIC_FAILURES, BatchOptions, BatchStatistics
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
    FileProcessingError,
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
    ToolCallError,
    UnprocessableEntityError,
)
from ._events import (
    Attempt,
    AttemptFailed,
    AttemptStarted,
    ClientStatistics,
    EmbeddingPackingDisabled,
    Event,
    RateLimited,
    RequestFinished,
    RetryScheduled,
    SharedQuotaRestored,
    SharedQuotaUnavailable,
    StreamEndedWithoutDone,
)
from ._frames import embeddings_array, results_frame
from ._gc import fewer_collections
from ._json import MAX_JSON_DEPTH, parse_json
from ._quota._redis_store import QuotaState, quota_state
from ._sync import BatchInterrupted, SyncClient, SyncFiles
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
    "Chunk",
    "Client",
    "ClientState",
    "ClientStatistics",
    "CompletionRequest",
    "ConfigurationError",
    "ConflictError",
    "ConnectionCheck",
    "DEFAULT_BASE_URL",
    "DEFAULT_CACHE_TTL",
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_MODEL",
    "DEFAULT_PACK_INPUTS",
    "DEFAULT_PACK_TOKENS",
    "DEFAULT_SYSTEMATIC_FAILURES",
    "Diagnosis",
    "DocumentAnswer",
    "DocumentSearchRequest",
    "Embedding",
    "EmbeddingPackingDisabled",
    "EmbeddingRequest",
    "EmbeddingResult",
    "EmbeddingResults",
    "EmbeddingStream",
    "Embeddings",
    "EndpointResult",
    "EndpointResults",
    "EndpointStream",
    "Event",
    "Extract",
    "FAILED_STATUSES",
    "FileInfo",
    "FileProcessingError",
    "FileUpload",
    "Files",
    "FilterRequest",
    "FilteredChunks",
    "FunctionCall",
    "Hedge",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidRequestError",
    "Limits",
    "MAX_EMBEDDING_INPUTS",
    "MAX_JSON_DEPTH",
    "Message",
    "ModelInfo",
    "NotFoundError",
    "OutputSchema",
    "PROCESSED_STATUSES",
    "ParadigmError",
    "PermissionDeniedError",
    "ProxyError",
    "QueryRequest",
    "QueryResult",
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
    "SourceDocument",
    "StreamEndedWithoutDone",
    "StructuredOutputError",
    "SyncBatchStream",
    "SyncChatStream",
    "SyncClient",
    "SyncFiles",
    "SystematicFailureError",
    "TextCompletion",
    "Timeouts",
    "TokenCount",
    "TokenLogprob",
    "TokenizeRequest",
    "ToolCall",
    "ToolCallError",
    "TopLogprob",
    "TrioTransport",
    "Turn",
    "TurnRequest",
    "UnprocessableEntityError",
    "Usage",
    "__version__",
    "check_connection",
    "diagnose",
    "embeddings_array",
    "fewer_collections",
    "function_tool",
    "instrument",
    "mask_credentials",
    "parse_json",
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
