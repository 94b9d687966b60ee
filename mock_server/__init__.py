"""A fault-injecting mock of the Paradigm (OpenAI-compatible) API: chat completions,
embeddings and the model list.

Run it in-process inside a trio nursery::

    import mock_server as ms

    async with ms.serve(ms.MockConfig(seed=0, faults=ms.FaultRates(server_error=0.1))) as server:
        ...  # point a client at server.url; judge it with server.stats(), server.requests()

or as a process: ``python -m mock_server --port 8000``.  See ``docs/mock-server.md``.

The mock never imports the ``paradigm_trio`` client.
"""

from __future__ import annotations

import contextlib

from ._app import create_app, get_state
from ._cli import main
from ._config import DEFAULT_MODELS, MockConfig
from ._embeddings import DEFAULT_EMBEDDING_DIMENSIONS, embedding_vector
from ._faults import (
    FAULT_KINDS,
    POSITIONED_KINDS,
    STREAM_FAULT_KINDS,
    TOOL_FAULT_KINDS,
    Fault,
    FaultRates,
    ScriptEntry,
)
from ._latency import Latency, Stragglers
from ._server import MockServer, serve
from ._state import MockState, MockStats, RequestRecord
from ._tls import TLSFiles, throwaway_ca

__all__ = [
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "DEFAULT_MODELS",
    "FAULT_KINDS",
    "Fault",
    "FaultRates",
    "Latency",
    "MockConfig",
    "MockServer",
    "MockState",
    "MockStats",
    "POSITIONED_KINDS",
    "RequestRecord",
    "STREAM_FAULT_KINDS",
    "ScriptEntry",
    "Stragglers",
    "TLSFiles",
    "TOOL_FAULT_KINDS",
    "create_app",
    "embedding_vector",
    "get_state",
    "main",
    "serve",
    "throwaway_ca",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("mock_server."):
        with contextlib.suppress(AttributeError, TypeError):
            _obj.__module__ = "mock_server"
del _name, _obj, contextlib
