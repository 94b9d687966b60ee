"""The admin routes (``/_mock/*``, ``/metrics``) and the guard that keeps browsers and
strangers out of ``/_mock/*`` (the decisions themselves are in :mod:`._guard`)."""

from __future__ import annotations

from typing import Any, Final

from quart import Response, request
from quart_trio import QuartTrio

from ._checks import strict_json
from ._content import RequestError, check_text
from ._guard import admin_denial, body_denial
from ._responses import error_response, json_response, read_body
from ._state import MockState

__all__ = ["add_admin_routes"]

_ADMIN_PREFIX: Final = "/_mock/"


class _AdminRoutes:
    def __init__(self, state: MockState) -> None:
        self.state = state

    async def guard(self) -> Response | None:
        """Before every request: refuse an admin request a browser or a stranger made."""
        if not request.path.startswith(_ADMIN_PREFIX):
            return None
        denial = admin_denial(
            {name.lower(): value for name, value in request.headers.items()},
            method=request.method,
            admin_token=self.state.config.admin_token,
        )
        if denial is None:
            return None
        return error_response(
            denial.status, denial.message, code=denial.code, headers=dict(denial.headers)
        )

    async def stats(self) -> Response:
        return json_response(self.state.stats().to_dict())

    async def requests(self) -> Response:
        records = [record.to_dict() for record in self.state.requests()]
        return json_response({"object": "list", "data": records})

    async def files(self) -> Response:
        return json_response({"object": "list", "data": self.state.file_summaries()})

    async def _json(self) -> Any:
        body, too_large = await read_body(self.state.config.max_body_bytes)
        if too_large:
            raise RequestError("Request body too large.", code="request_too_large", status=413)
        denial = body_denial(request.headers.get("Content-Type"), has_body=bool(body))
        if denial is not None:
            raise RequestError(denial.message, code=denial.code, status=denial.status)
        try:
            data = strict_json(body)
        except (ValueError, RecursionError):
            raise RequestError("The body is not valid JSON.", code="invalid_json") from None
        check_text(data)
        return data

    async def config(self) -> Response:
        if request.method == "POST":
            try:
                changes = await self._json()
                if not isinstance(changes, dict):
                    raise RequestError(
                        "Expected a JSON object of MockConfig fields.", code="invalid_body"
                    )
                self.state.configure(**changes)
            except RequestError as exc:
                return error_response(exc.status, exc.message, code=exc.code)
            except (ValueError, TypeError) as exc:
                return error_response(400, str(exc), code="invalid_config")
        return json_response(self.state.config.to_dict())

    async def reset(self) -> Response:
        self.state.reset()
        return json_response({"reset": True})

    async def script(self) -> Response:
        try:
            data = await self._json()
            if not isinstance(data, dict) or not isinstance(data.get("outcomes"), list):
                raise RequestError(
                    'Expected {"key": "...", "outcomes": [...]}.', code="invalid_body"
                )
            self.state.script(data.get("key"), data["outcomes"])  # type: ignore[arg-type]
        except RequestError as exc:
            return error_response(exc.status, exc.message, code=exc.code)
        except (ValueError, TypeError) as exc:
            return error_response(400, str(exc), code="invalid_script")
        return json_response({"key": data["key"], "queued": len(data["outcomes"])})

    async def metrics(self) -> Response:
        return Response(
            self.state.metrics(), content_type="text/plain; version=0.0.4; charset=utf-8"
        )


def add_admin_routes(app: QuartTrio, state: MockState) -> None:
    """Serve ``/_mock/*`` and ``/metrics`` of ``state``, behind the admin guard."""
    routes = _AdminRoutes(state)
    app.add_url_rule("/_mock/stats", "admin_stats", routes.stats, methods=["GET"])
    app.add_url_rule("/_mock/requests", "admin_requests", routes.requests, methods=["GET"])
    app.add_url_rule("/_mock/files", "admin_files", routes.files, methods=["GET"])
    app.add_url_rule("/_mock/config", "admin_config", routes.config, methods=["GET", "POST"])
    app.add_url_rule("/_mock/reset", "admin_reset", routes.reset, methods=["POST"])
    app.add_url_rule("/_mock/script", "admin_script", routes.script, methods=["POST"])
    app.add_url_rule("/metrics", "metrics", routes.metrics, methods=["GET"])
    app.before_request(routes.guard)
