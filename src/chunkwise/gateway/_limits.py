"""Why a key was refused, decided from its stored counters (no I/O).

Admission itself is one atomic ``UPDATE ... WHERE <every limit holds>`` in the database (see ``_ledger``): a
budget admits a request only while ``used + reserved + its reservation <= budget``,
so concurrent requests, on one gateway or several sharing PostgreSQL, can never be over-admitted. Only
when that update matches no row is the key read back and this module asked which limit was hit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._keys import KeyRecord

__all__ = ["Refusal", "explain_refusal"]


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    error_type: str
    #: Seconds until the limit resets, sent as ``Retry-After``; None when waiting does not help.
    retry_after: int | None = None


def explain_refusal(key: KeyRecord | None, model: str, now: float, window: int, reserve: int = 0) -> Refusal | None:
    """The refusal for a key the admission update did not match, or None if no limit is hit (any more)."""
    if key is None or key.revoked_at is not None:
        return Refusal(401, "invalid_api_key", "Incorrect or revoked API key.", "invalid_request_error")
    if key.models and model not in key.models:
        shown = model if len(model) <= 100 else model[:100] + "..."
        return Refusal(
            403, "model_not_allowed", f"This key may not use the model {shown!r}.", "permission_denied_error"
        )
    current = int(now // window)
    same_window = key.window_start == current
    retry_after = max(1, math.ceil((current + 1) * window - now))
    if key.rpm is not None and same_window and key.window_requests >= key.rpm:
        return Refusal(
            429,
            "rate_limit_exceeded",
            f"Rate limit reached: {key.rpm} requests per {window} s.",
            "requests",
            retry_after,
        )
    if key.tpm is not None and same_window and key.window_tokens >= key.tpm:
        return Refusal(
            429, "rate_limit_exceeded", f"Rate limit reached: {key.tpm} tokens per {window} s.", "tokens", retry_after
        )
    if key.budget_tokens is not None and key.tokens_used + key.reserved_tokens + reserve > key.budget_tokens:
        left = max(key.budget_tokens - key.tokens_used - key.reserved_tokens, 0)
        return Refusal(
            429,
            "insufficient_quota",
            f"The key's budget of {key.budget_tokens} tokens cannot hold this request: it may cost up to "
            f"{reserve} tokens and {left} are left (running requests hold their bound until they settle).",
            "insufficient_quota",
        )
    return None
