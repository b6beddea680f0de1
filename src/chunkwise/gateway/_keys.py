"""API keys: made from 256 random bits, shown once, stored only as a SHA-256 hash.

A slow password hash (bcrypt, scrypt) protects guessable secrets; these keys are random, so one SHA-256
is as safe and keeps the lookup on every request cheap.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

__all__ = ["KEY_PREFIX", "KeyRecord", "generate_key", "hash_key", "models_tag", "parse_models_tag"]

KEY_PREFIX = "cwk-"
#: Separates model ids in the stored list; a model id never holds a line break.
_SEP = "\n"


def generate_key() -> tuple[str, str]:
    """A new ``(key id, secret key)``; the id names the key in listings, logs and metrics."""
    return "key_" + secrets.token_hex(6), KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def models_tag(models: tuple[str, ...] | list[str]) -> str:
    """The stored form of a model list: ``"\\na\\nb\\n"`` so that SQL can test one model with a substring search."""
    return _SEP + _SEP.join(models) + _SEP if models else ""


def parse_models_tag(tag: str) -> tuple[str, ...]:
    return tuple(model for model in tag.split(_SEP) if model)


@dataclass(frozen=True)
class KeyRecord:
    """A key as stored: its limits and its counters (never the secret)."""

    id: str
    name: str
    #: Empty: every model.
    models: tuple[str, ...]
    rpm: int | None
    tpm: int | None
    budget_tokens: int | None
    tokens_used: int
    reserved_tokens: int
    window_start: int
    window_requests: int
    window_tokens: int
    created_at: float
    revoked_at: float | None
