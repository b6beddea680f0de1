"""JSON answers encoded by msgspec (never the standard library's ``json``), and the model list."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from starlette.responses import Response

from ..types import Model, ModelList

__all__ = ["JSON_MEDIA_TYPE", "JSONResponse", "model_list_response"]

JSON_MEDIA_TYPE = "application/json"

_encoder = msgspec.json.Encoder()


class JSONResponse(Response):
    """A wire type, or any value msgspec can encode (bytes pass as they are), as a JSON response."""

    media_type = JSON_MEDIA_TYPE

    def __init__(self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(content, status_code=status_code, headers=headers)

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return _encoder.encode(content)


def model_list_response(models: Iterable[Model]) -> JSONResponse:
    """``GET /v1/models``: ``{"object": "list", "data": [...]}``."""
    return JSONResponse(ModelList(data=list(models)))
