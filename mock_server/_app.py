"""The QuartTrio application: its routes (API in :mod:`._api`, admin in :mod:`._admin`),
its state and its error pages."""

from __future__ import annotations

import http
from typing import Final

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ._admin import add_admin_routes
from ._api import add_api_routes
from ._config import MockConfig
from ._paradigm_routes import add_paradigm_routes
from ._responses import error_response, status_code_name
from ._state import MockState
from ._transport import ConnectionMiddleware

__all__ = ["STATE_KEY", "create_app", "get_state"]

#: Key of the :class:`MockState` in ``app.extensions``.
STATE_KEY: Final = "mock_server"


def get_state(app: QuartTrio) -> MockState:
    """The :class:`MockState` of an app made by :func:`create_app`."""
    state = app.extensions.get(STATE_KEY)
    if not isinstance(state, MockState):
        raise LookupError("this app was not made by mock_server.create_app()")
    return state


def create_app(config: MockConfig | None = None) -> QuartTrio:
    """The mock as a ``QuartTrio`` app (serve it with Hypercorn's trio worker).

    Its :class:`MockState` is ``app.extensions["mock_server"]`` (or :func:`get_state`).
    """
    state = MockState(config)
    app = QuartTrio("mock_server")
    app.config.update(MAX_CONTENT_LENGTH=None, RESPONSE_TIMEOUT=None, BODY_TIMEOUT=60)
    app.extensions[STATE_KEY] = state
    add_paradigm_routes(app, add_api_routes(app, state))
    add_admin_routes(app, state)
    _add_error_handlers(app)
    app.asgi_app = ConnectionMiddleware(app.asgi_app, state)  # type: ignore[method-assign]
    return app


def _add_error_handlers(app: QuartTrio) -> None:
    """Answer HTTP errors and unhandled exceptions with OpenAI error envelopes."""

    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 404:
            message = f"Invalid URL ({request.method} {request.path})."
        elif status == 405:
            message = f"Method {request.method} is not allowed for {request.path}."
        else:
            message = error.description or http.HTTPStatus(status).phrase
        response = error_response(status, message, code=status_code_name(status))
        if status == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    async def internal_error(error: Exception) -> Response:
        app.logger.exception("mock_server: unhandled error", exc_info=error)
        return error_response(500, "The mock server had an internal error.", code="internal_error")

    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, internal_error)
