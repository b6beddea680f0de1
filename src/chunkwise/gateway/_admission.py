"""Who may send what: the caller's key, the request's checks, the key's limits and its token reservation.

A refused request raises an :class:`~chunkwise.APIStatusError` that the edge's choke point answers in the
OpenAI error shape, ``Retry-After`` included when waiting helps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from .._errors import APIStatusError, BadRequestError
from ..edge import decode_json, find_credential, read_body
from ._config import GatewaySettings
from ._keys import KeyRecord
from ._ledger import Admitted, Store
from ._limits import Refusal, explain_refusal
from ._metrics import GatewayMetrics

__all__ = ["UNKNOWN_MODEL", "Admission", "AdmittedRequest", "estimate_prompt_tokens"]

_MISSING_KEY = Refusal(
    401,
    "invalid_api_key",
    "Missing API key: send Authorization: Bearer KEY, or x-api-key: KEY.",
    "invalid_request_error",
)
_INVALID_KEY = Refusal(401, "invalid_api_key", "Incorrect or revoked API key.", "invalid_request_error")
# A limit that no longer holds (the window turned) or a race with another request: say "retry".
_RETRY = Refusal(429, "rate_limit_exceeded", "Rate limit reached; retry shortly.", "requests", 1)


#: The model a ledger row or metric label names when the request's model is not one the gateway serves.
UNKNOWN_MODEL = "unknown"


def _completion_bound(payload: dict[str, Any], context_tokens: int) -> int:
    """The most completion tokens the request can cost: its ``max_tokens`` (``max_output_tokens`` in the Responses
    API; times ``n``), else the model's room."""
    choices = payload.get("n")
    count = choices if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1 else 1
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return count * min(value, context_tokens)
    return count * context_tokens


def _prompt_texts(payload: dict[str, Any]) -> list[str]:
    texts: list[str] = []
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        texts.append(prompt)
    elif isinstance(prompt, list):
        texts.extend(item for item in prompt if isinstance(item, str))
        texts.extend("x" * len(item) for item in prompt if isinstance(item, list))  # token ids: one each
    # A Responses request's `instructions` and `input`, a Messages request's `system`.
    for name in ("instructions", "system", "input"):
        if isinstance(payload.get(name), str):
            texts.append(payload[name])
    messages = payload.get("messages")
    if isinstance(payload.get("input"), list):
        messages = payload["input"]
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(
                part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
        texts.append("role")  # the template's markers around each message
    return texts


def estimate_prompt_tokens(payload: dict[str, Any]) -> int:
    """The gateway's own count of a request's prompt, billed when the upstream reports none: about four
    bytes of text per token (the usual rate for English under BPE tokenizers), plus the template's markers."""
    return sum(-(-len(text.encode()) // 4) + 4 for text in _prompt_texts(payload))


@dataclass(frozen=True, slots=True)
class AdmittedRequest:
    """A request the key's limits let through: its decoded payload, its body and what it was charged."""

    admitted: Admitted
    model: str
    #: ``model`` if the gateway serves it, else :data:`UNKNOWN_MODEL`: what metrics and the ledger store.
    label: str
    payload: dict[str, Any]
    body: bytes
    started_at: float


class Admission:
    """Checks a proxied request and counts it against its key, in one database statement when it passes."""

    def __init__(
        self, store: Store, settings: GatewaySettings, metrics: GatewayMetrics, serves: Callable[[str], bool]
    ) -> None:
        self._store = store
        self._max_body_size = settings.max_body_size
        self._window = settings.limit_window
        self._context_tokens = settings.model_context_tokens
        self._metrics = metrics
        self._serves = serves

    async def admit(self, request: Request, started_at: float, *, model_field: str = "model") -> AdmittedRequest:
        """``model_field`` names the model's key: ``model_name`` in a confidential envelope."""
        credential = find_credential(request.scope["headers"])
        if credential is None:
            raise self._refused(_MISSING_KEY)
        secret = credential.text
        body = await read_body(request, self._max_body_size)
        payload: object = decode_json(body, object)
        model = payload.get(model_field) if isinstance(payload, dict) else None
        if not isinstance(model, str) or not model:
            raise BadRequestError(f"`{model_field}` is required.", code="missing_model")
        assert isinstance(payload, dict)
        # A token is at least one byte of its text, and the body's JSON around the text outweighs the
        # template's markers: the body's size bounds the prompt from above, whatever the tokenizer.
        reserve = len(body) + _completion_bound(payload, self._context_tokens)
        label = model if self._serves(model) else UNKNOWN_MODEL
        estimate = estimate_prompt_tokens(payload)
        admitted = await self._store.admit(
            secret, model, reserve, started_at, prompt_estimate=estimate, ledger_model=label
        )
        if admitted is None:
            key = await self._store.find_key(secret)
            raise self._refused(explain_refusal(key, model, time.time(), self._window, reserve) or _RETRY)
        return AdmittedRequest(admitted, model, label, payload, body, started_at)

    async def listing_key(self, request: Request) -> KeyRecord:
        """The key of a ``GET /v1/models``, which needs a valid key but counts against no limit."""
        credential = find_credential(request.scope["headers"])
        key = None if credential is None else await self._store.find_key(credential.text)
        if key is None or key.revoked_at is not None:
            raise self._refused(_INVALID_KEY)
        return key

    def _refused(self, refusal: Refusal) -> APIStatusError:
        self._metrics.refusals.labels(refusal.code).inc()
        headers = {"retry-after": str(refusal.retry_after)} if refusal.retry_after is not None else None
        return APIStatusError(
            refusal.message, status=refusal.status, type=refusal.error_type, code=refusal.code, headers=headers
        )
