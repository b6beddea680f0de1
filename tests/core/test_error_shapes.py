"""Every exception maps to one status and detail; a dialect writes them in its own error shape."""

from __future__ import annotations

import json

import msgspec
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

import chunkwise
from chunkwise import EngineError
from chunkwise._errors import APIStatusError, BadRequestError, RateLimitError
from chunkwise.edge import OPENAI_ERRORS, ErrorBoundary, describe_error, error_response
from chunkwise.engine import InvalidRequestError
from chunkwise.types import ErrorDetail


class _MessagesShape:
    """Anthropic's shape, as the Messages dialect will write it (a test stand-in until that dialect exists)."""

    _TYPES = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}

    def body(self, status: int, detail: ErrorDetail) -> bytes:
        kind = self._TYPES.get(status, "api_error")
        return msgspec.json.encode({"type": "error", "error": {"type": kind, "message": detail.message}})

    def event(self, status: int, detail: ErrorDetail) -> bytes:
        return b"event: error\ndata: " + self.body(status, detail) + b"\n\n"


def test_every_error_answer_is_one_status_error() -> None:
    engine_error = InvalidRequestError("too long", param="messages", code="context_length_exceeded")
    assert isinstance(engine_error, APIStatusError) and engine_error.status == 400
    assert describe_error(engine_error)[:2] == (
        400,
        ErrorDetail(message="too long", type="invalid_request_error", param="messages", code="context_length_exceeded"),
    )
    refusal = RateLimitError("slow down", code="rate_limit_exceeded", headers={"retry-after": "3"})
    assert describe_error(refusal) == (
        429,
        ErrorDetail(message="slow down", type="rate_limit_error", code="rate_limit_exceeded"),
        {"retry-after": "3"},
    )
    assert describe_error(EngineError("decode failed"))[0] == 500
    assert describe_error(ValueError("a bug"))[:2] == (
        500,
        ErrorDetail(message="The server had an internal error.", type="server_error"),
    )
    # The client's status errors are the same classes: one tree.
    assert issubclass(chunkwise.BadRequestError, BadRequestError)
    assert issubclass(chunkwise.RateLimitError, RateLimitError)


def test_a_dialect_supplies_its_own_error_shape() -> None:
    shape = _MessagesShape()
    response = error_response(BadRequestError("`max_tokens` is required.", param="max_tokens"), shape)
    assert response.status_code == 400
    assert json.loads(bytes(response.body)) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "`max_tokens` is required."},
    }
    openai = error_response(BadRequestError("`max_tokens` is required.", param="max_tokens"), OPENAI_ERRORS)
    assert json.loads(bytes(openai.body))["error"]["param"] == "max_tokens"


@pytest.mark.parametrize("shape", [OPENAI_ERRORS, _MessagesShape()])
def test_the_boundary_answers_a_bug_in_the_shape_it_was_given(shape: _MessagesShape) -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug")

    routes = [Route("/v1/messages", broken, methods=["POST"])]
    app = Starlette(routes=routes, middleware=[Middleware(ErrorBoundary, shape=shape)])
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/messages", json={})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    expected = shape.body(500, ErrorDetail(message="The server had an internal error.", type="server_error"))
    assert response.content == expected
