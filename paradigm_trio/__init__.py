"""paradigm-trio: a trio-native batch client for LightOn's Paradigm API.

Everything public is re-exported here; the ``_*`` modules are private.
"""

from __future__ import annotations

import contextlib

from ._batch import BatchResult, BatchResults, BatchStream
from ._batch_options import BatchOptions, BatchStatistics
from ._client import Client, ClientState, instrument
from ._config import DEFAULT_BASE_URL, DEFAULT_MODEL, Limits, RedisQuota, RetryPolicy, Timeouts
from ._doctor import CheckStep, ConnectionCheck, check_connection
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
from ._models import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    Message,
    ModelInfo,
    Usage,
)
from ._redis_store import QuotaState, quota_state
from ._streaming import ChatStream
from ._tls import system_trust_store
from ._transport import TrioTransport
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
    "Client",
    "ClientState",
    "ClientStatistics",
    "ConfigurationError",
    "ConflictError",
    "ConnectionCheck",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "Event",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidRequestError",
    "Limits",
    "Message",
    "ModelInfo",
    "NotFoundError",
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
    "RetryPolicy",
    "RetryScheduled",
    "ServerUnreachableError",
    "SharedQuotaRestored",
    "SharedQuotaUnavailable",
    "StreamEndedWithoutDone",
    "Timeouts",
    "TrioTransport",
    "UnprocessableEntityError",
    "Usage",
    "__version__",
    "check_connection",
    "instrument",
    "quota_state",
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
