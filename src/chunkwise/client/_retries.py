"""Retry decisions: which failures are retried, and how long to wait first. No I/O.

Retried: connection failures (including a connect timeout, but no deadline that passed once the
server had the request), and the statuses 408, 409, 429 and 5xx. A stream is only ever retried
before it produced its first chunk, because ``create(stream=True)`` returns only once the first
chunk arrived; after that no failure goes back through the retry loop.

The wait is the server's when it gives one (``retry-after-ms``, then ``Retry-After`` in seconds or
as an HTTP date), else exponential back-off with jitter. A server that asks for longer than
``Backoff.max_retry_after`` is not retried at all: waiting less would only be refused again.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from dataclasses import dataclass

import httpx

from .._errors import APIError
from ._errors import APIConnectionError, APIStatusError, APITimeoutError, ConnectTimeoutError
from ._timeouts import Deadlines

__all__ = ["Backoff", "RetryState", "is_retryable", "server_retry_delay"]

logger = logging.getLogger("chunkwise.client")

_RETRYABLE_STATUSES = frozenset({408, 409, 429})


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait between attempts when the server does not say.

    The n-th retry waits ``min(initial * 2**n, maximum)``, scaled by a random factor in [0.5, 1] so
    that clients that failed together do not retry together.
    """

    initial: float = 0.5
    maximum: float = 8.0
    #: The longest ``Retry-After`` that is honoured; a longer one ends the retries.
    max_retry_after: float = 60.0

    def delay(self, retry_number: int, rng: random.Random) -> float:
        ceiling = min(self.initial * 2.0**retry_number, self.maximum)
        return ceiling * (0.5 + 0.5 * rng.random())


def is_retryable(error: APIError) -> bool:
    if isinstance(error, APIStatusError):
        return error.status_code in _RETRYABLE_STATUSES or error.status_code >= 500
    if isinstance(error, APITimeoutError):
        return isinstance(error, ConnectTimeoutError)
    return isinstance(error, APIConnectionError)


def server_retry_delay(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds the server asked to wait, from ``retry-after-ms`` or ``Retry-After``; ``None`` if it did not."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RetryState:
    """The retry bookkeeping of one call."""

    __slots__ = ("_backoff", "_deadlines", "_max_retries", "_rng", "retries")

    def __init__(self, max_retries: int, backoff: Backoff, deadlines: Deadlines, rng: random.Random) -> None:
        self._max_retries = max_retries
        self._backoff = backoff
        self._deadlines = deadlines
        self._rng = rng
        self.retries = 0

    def delay_before_retry(self, error: APIError, what: str) -> float | None:
        """Seconds to wait before trying again, or ``None`` when ``error`` should be raised."""
        if self.retries >= self._max_retries or not is_retryable(error):
            return None
        delay: float | None = None
        if isinstance(error, APIStatusError):
            delay = server_retry_delay(error.response.headers)
            if delay is not None and delay > self._backoff.max_retry_after:
                logger.info("%s: not retrying, the server asks to wait %.1f s: %s", what, delay, error)
                return None
        if delay is None:
            delay = self._backoff.delay(self.retries, self._rng)
        if not self._deadlines.allows_wait(delay):
            return None
        self.retries += 1
        logger.info("%s: retry %d of %d in %.2f s after: %s", what, self.retries, self._max_retries, delay, error)
        return delay
