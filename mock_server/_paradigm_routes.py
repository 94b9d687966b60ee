"""Paradigm's own routes, beyond the OpenAI subset: ``/tokenize``, ``/query``,
``/filter/chunks``, ``/chat/document-search``, the legacy ``/completions``, the files
API (``/files``, ``/files/{id}``), under the chat route's prefixes (``/api/v2``,
``/v1``), and ``/api/v3/threads/turns``.

Each route hands its parser to :meth:`ApiRoutes.handle`, so auth, the body limit, the
request log, quotas, drawn and scripted faults and latency are those of the chat route.
"""

from __future__ import annotations

from functools import partial

from quart import Response, request
from quart_trio import QuartTrio

from ._api import API_PREFIXES, ApiRoutes
from ._files import parse_delete, parse_get, parse_list, parse_upload, read_upload
from ._search import parse_document_search, parse_filter, parse_query
from ._threads import parse_thread_turn
from ._tokens import parse_completion, parse_tokenize

__all__ = ["V3_PREFIX", "add_paradigm_routes"]

#: The prefix of Paradigm's v3 API (only ``/threads/turns`` is served under it).
V3_PREFIX = "/api/v3"


class _ParadigmRoutes:
    def __init__(self, api: ApiRoutes) -> None:
        self.api = api

    def _default_max_tokens(self) -> int:
        return self.api.state.config.default_max_tokens

    async def tokenize(self) -> Response:
        return await self.api.handle(parse_tokenize)

    async def query(self) -> Response:
        return await self.api.handle(parse_query)

    async def filter_chunks(self) -> Response:
        return await self.api.handle(parse_filter)

    async def document_search(self) -> Response:
        limit = self._default_max_tokens()
        return await self.api.handle(partial(parse_document_search, default_max_tokens=limit))

    async def completions(self) -> Response:
        limit = self._default_max_tokens()
        return await self.api.handle(partial(parse_completion, default_max_tokens=limit))

    async def thread_turns(self) -> Response:
        limit = self._default_max_tokens()
        return await self.api.handle(partial(parse_thread_turn, default_max_tokens=limit))

    async def files(self) -> Response:
        if request.method == "POST":
            return await self.api.handle(parse_upload, read_upload)
        args, url = request.args, request.url
        return await self.api.handle(lambda body, models: parse_list(args, url))

    async def file(self, file_id: int) -> Response:
        if request.method == "DELETE":
            return await self.api.handle(lambda body, models: parse_delete(file_id))
        args = request.args
        return await self.api.handle(lambda body, models: parse_get(args, file_id))


def add_paradigm_routes(app: QuartTrio, api: ApiRoutes) -> None:
    """Serve Paradigm's own routes through ``api`` (see the module docstring)."""
    routes = _ParadigmRoutes(api)
    for prefix in API_PREFIXES:
        name = prefix.strip("/").replace("/", "_")
        for path, view, methods in (
            ("/tokenize", routes.tokenize, ["POST"]),
            ("/query", routes.query, ["POST"]),
            ("/filter/chunks", routes.filter_chunks, ["POST"]),
            ("/chat/document-search", routes.document_search, ["POST"]),
            ("/completions", routes.completions, ["POST"]),
            ("/files", routes.files, ["GET", "POST"]),
            ("/files/<int:file_id>", routes.file, ["GET", "DELETE"]),
        ):
            endpoint = f"{view.__name__}_{name}"
            app.add_url_rule(prefix + path, endpoint, view, methods=methods)
    app.add_url_rule(
        f"{V3_PREFIX}/threads/turns", "thread_turns", routes.thread_turns, methods=["POST"]
    )
