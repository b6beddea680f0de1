"""Who may send what: the caller's key, the request's checks, the key's limits and its token reservation.

A refused request raises an :class:`~chunkwise.APIStatusError` that the edge's choke point answers in the
OpenAI error shape, ``Retry-After`` included when waiting helps.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request

from .._errors import APIStatusError, BadRequestError
from ..edge import BEARER, decode_json, find_credential, read_body
from ._config import GatewaySettings
from ._keys import KeyRecord
from ._ledger import Admitted, Store
from ._limits import Refusal, explain_refusal
from ._metrics import GatewayMetrics

__all__ = ["Admission", "AdmittedRequest"]

_MISSING_KEY = Refusal(
    401, "invalid_api_key", "Missing API key: send Authorization: Bearer KEY.", "invalid_request_error"
)
_INVALID_KEY = Refusal(401, "invalid_api_key", "Incorrect or revoked API key.", "invalid_request_error")
# A limit that no longer holds (the window turned) or a race with another request: say "retry".
_RETRY = Refusal(429, "rate_limit_exceeded", "Rate limit reached; retry shortly.", "requests", 1)


def _reserve(payload: dict[str, Any]) -> int:
    """Tokens to hold against the key's budget while the request runs: its own ``max_tokens``, if any."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


class AdmittedRequest:
    """A request the key's limits let through: its decoded payload, its body and what it was charged."""

    __slots__ = ("admitted", "body", "model", "payload", "started_at")

    def __init__(self, admitted: Admitted, model: str, payload: dict[str, Any], body: bytes, started_at: float):
        self.admitted = admitted
        self.model = model
        self.payload = payload
        self.body = body
        self.started_at = started_at


class Admission:
    """Checks a proxied request and counts it against its key, in one database statement when it passes."""

    def __init__(self, store: Store, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self._store = store
        self._max_body_size = settings.max_body_size
        self._window = settings.limit_window
        self._metrics = metrics

    async def admit(self, request: Request, started_at: float) -> AdmittedRequest:
        credential = find_credential(request.scope["headers"])
        if credential is None or credential.scheme != BEARER:
            raise self._refused(_MISSING_KEY)
        secret = credential.text
        body = await read_body(request, self._max_body_size)
        payload: object = decode_json(body, object)
        model = payload.get("model") if isinstance(payload, dict) else None
        if not isinstance(model, str) or not model:
            raise BadRequestError("`model` is required.", code="missing_model")
        assert isinstance(payload, dict)
        admitted = await self._store.admit(secret, model, _reserve(payload), started_at)
        if admitted is None:
            key = await self._store.find_key(secret)
            raise self._refused(explain_refusal(key, model, time.time(), self._window) or _RETRY)
        return AdmittedRequest(admitted, model, payload, body, started_at)

    async def listing_key(self, request: Request) -> KeyRecord:
        """The key of a ``GET /v1/models``, which needs a valid key but counts against no limit."""
        credential = find_credential(request.scope["headers"])
        key = None if credential is None or credential.scheme != BEARER else await self._store.find_key(credential.text)
        if key is None or key.revoked_at is not None:
            raise self._refused(_INVALID_KEY)
        return key

    def _refused(self, refusal: Refusal) -> APIStatusError:
        self._metrics.refusals.labels(refusal.code).inc()
        headers = {"retry-after": str(refusal.retry_after)} if refusal.retry_after is not None else None
        return APIStatusError(
            refusal.message, status=refusal.status, type=refusal.error_type, code=refusal.code, headers=headers
        )
