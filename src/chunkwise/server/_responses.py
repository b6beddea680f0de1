"""JSON responses encoded by msgspec (never the standard library's ``json``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.responses import Response

__all__ = ["JSON_MEDIA_TYPE", "HealthStatus", "MsgspecResponse"]

JSON_MEDIA_TYPE = "application/json"

_encoder = msgspec.json.Encoder()


class MsgspecResponse(Response):
    """A wire type, or any value msgspec can encode, as a JSON response."""

    media_type = JSON_MEDIA_TYPE

    def __init__(self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(content, status_code=status_code, headers=headers)

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return _encoder.encode(content)


class HealthStatus(msgspec.Struct, kw_only=True):
    """The body of ``GET /health``; ``message`` is what the Atoma proxy answers and its SDKs require."""

    message: str = "ok"
    status: str = "ok"
    #: The model the engine serves.
    model: str
