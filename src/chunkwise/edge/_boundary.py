"""The one error choke point of both apps: no exception leaves a handler as a plain 500 or a dropped connection.

:class:`ErrorBoundary` wraps a whole ASGI app. :func:`respond` runs one handler directly, for routes that
skip the app's middleware on purpose (the gateway's proxied routes): it adds nothing on the way out, so a
stream's messages go to ``send`` as they are. Both answer an exception with :func:`error_response`, in the
dialect's :class:`ErrorShape`; once a response has started, the exception can only be logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import ChunkwiseError, MethodNotAllowedError, NotFoundError
from ._dialect_errors import errors_for_path
from ._errors import OPENAI_ERRORS, ErrorShape, error_response

__all__ = ["ErrorBoundary", "Handler", "exception_handlers", "respond"]

Handler = Callable[[Request], Awaitable[Response]]


class ErrorBoundary:
    """Pure ASGI middleware: an exception before the response started is answered in ``shape``.

    In a Starlette app it goes in ``middleware=``: Starlette's own outermost layer answers any exception in
    plain text before a wrapper outside the app could.

    A subclass that needs the response's start message too (to add a header, to count statuses) overrides
    :meth:`enter` and :meth:`starting` instead of wrapping ``send`` once more.
    """

    def __init__(self, app: ASGIApp, *, shape: ErrorShape = OPENAI_ERRORS) -> None:
        self.app = app
        self.shape = shape

    def enter(self, scope: Scope) -> None:
        """Called once per HTTP request, before the app sees it."""

    def starting(self, scope: Scope, message: Message) -> None:
        """Called with the ``http.response.start`` message (the app's or the error answer's) before it is sent."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.enter(scope)
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self.starting(scope, message)
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:
            response = error_response(exc, self.shape)  # logs it
            if not started:
                await response(scope, receive, watched_send)


async def respond(
    handler: Handler, scope: Scope, receive: Receive, send: Send, shape: ErrorShape = OPENAI_ERRORS
) -> None:
    """Runs ``handler`` and sends its response; an exception from the handler is answered in ``shape``."""
    try:
        response = await handler(Request(scope, receive))
    except Exception as exc:
        response = error_response(exc, shape)
    await response(scope, receive, send)


async def _chunkwise_error(request: Request, exc: Exception) -> Response:
    return error_response(exc, errors_for_path(request.url.path))


async def _http_error(request: Request, exc: Exception) -> Response:
    # The router's own 404 and 405 answers, in the OpenAI wording and the path's dialect's shape.
    shape = errors_for_path(request.url.path)
    if isinstance(exc, HTTPException) and exc.status_code == 404:
        return error_response(NotFoundError(f"Invalid URL ({request.method} {request.url.path})."), shape)
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        error = MethodNotAllowedError(
            f"Method {request.method} is not allowed on {request.url.path}.", headers=dict(exc.headers or {})
        )
        return error_response(error, shape)
    return error_response(exc, shape)


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """Starlette's ``exception_handlers``: chunkwise's errors and the router's 404 and 405, in the error shape of
    the path's dialect (:func:`errors_for_path`).

    They answer inside the app's middleware (so CORS headers still apply); the boundary catches the rest.
    """
    return {ChunkwiseError: _chunkwise_error, HTTPException: _http_error}
