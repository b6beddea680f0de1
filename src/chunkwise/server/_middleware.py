"""Pure ASGI middleware (never ``BaseHTTPMiddleware``, which would buffer and hide disconnects).

* :class:`RequestContextMiddleware`, the outermost layer: gives every request an id (the
  ``x-request-id`` header of every response) and counts answers by status. It is the edge's
  :class:`~chunkwise.edge.ErrorBoundary`, the server's one error choke point: an unexpected exception
  becomes a 500 in the error shape (with its id, counted) instead of a dropped connection.
* :class:`CORSMiddleware`: Starlette's, with its refusals of a preflight in the OpenAI error shape.
* :class:`BearerAuthMiddleware`: ``/v1/*`` needs the API key when one is set, in ``Authorization: Bearer``
  or ``x-api-key`` (Anthropic's header); a Messages endpoint refuses in Anthropic's shape. It sits inside the CORS
  middleware, so browser preflight requests are answered without a key, as browsers never send one.
"""

from __future__ import annotations

import secrets
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import cors
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import AuthenticationError, BadRequestError
from ..edge import ErrorBoundary, error_response, errors_for_path, find_credential
from ._metrics import ServerMetrics

__all__ = ["BearerAuthMiddleware", "CORSMiddleware", "RequestContextMiddleware", "new_request_id"]

REQUEST_ID_HEADER = "x-request-id"


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestContextMiddleware(ErrorBoundary):
    def __init__(self, app: ASGIApp, *, metrics: ServerMetrics, routes: frozenset[str]) -> None:
        super().__init__(app)
        self.metrics = metrics
        self.routes = routes

    def enter(self, scope: Scope) -> None:
        scope.setdefault("state", {})["request_id"] = new_request_id()

    def starting(self, scope: Scope, message: Message) -> None:
        MutableHeaders(scope=message)[REQUEST_ID_HEADER] = scope["state"]["request_id"]
        route = scope["path"] if scope["path"] in self.routes else "other"
        self.metrics.requests.labels(route, str(message["status"])).inc()


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, *, api_key: str, protected_prefix: str | tuple[str, ...] = "/v1/") -> None:
        self.app = app
        self._expected = api_key.encode()
        self._prefix = protected_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self._prefix) or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        error = AuthenticationError(
            "Missing or invalid API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await error_response(error, errors_for_path(scope["path"]))(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        credential = find_credential(scope["headers"])
        return credential is not None and secrets.compare_digest(credential.secret, self._expected)


class CORSMiddleware(cors.CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        reason = bytes(response.body).decode()  # "Disallowed CORS origin, headers"
        error = error_response(BadRequestError(f"{reason}.", code="cors_preflight_rejected"))
        for name, value in response.headers.items():
            if name.startswith("access-control-") or name == "vary":
                error.headers[name] = value
        return error
