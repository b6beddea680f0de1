"""The OpenAI error body, ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import msgspec

__all__ = ["ErrorDetail", "ErrorResponse"]


class ErrorDetail(msgspec.Struct, kw_only=True):
    """All four OpenAI keys are always written, ``null`` included, as OpenAI does."""

    message: str = ""
    type: str | None = None
    param: str | None = None
    #: OpenAI sends strings (``"model_not_found"``); Atoma sends upper-case codes; some servers send numbers.
    code: str | int | None = None
    #: TGI puts the HTTP status inside mid-stream error frames; never written unless set.
    http_status_code: int | msgspec.UnsetType = msgspec.UNSET


class ErrorResponse(msgspec.Struct, kw_only=True):
    error: ErrorDetail
