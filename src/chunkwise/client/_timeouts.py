"""Timeouts: the four deadlines of a call and the clock bookkeeping both clients share.

A call has four deadlines. ``connect`` bounds each connection attempt. ``first_chunk`` runs from
sending a request to its first parsed chunk, ``idle`` from one parsed chunk to the next, and
``total`` from the start of the call to its end, retries and back-off included. Idle time is
measured on parsed chunks, not on bytes: a server that only sends keep-alive comments is idle.

:class:`Deadlines` is pure bookkeeping (no I/O, no threads); the I/O loops ask it how long the next
read may block and which error to raise when that time is up:

* the async loop wraps every read in a cancel scope that ends at the nearest deadline, so each
  deadline fires on time;
* httpx's sync API has no per-read timeout: httpcore looks up the read timeout once when it starts
  reading the headers and once when it starts reading the body. The sync loops (a stream's, and the
  read of a whole answer) therefore check the clock after every network read (keep-alives included),
  so a server that drips bytes cannot outlast a deadline, and hand httpx a timeout extension whose
  ``read`` entry is computed at the moment httpcore looks it up (:class:`LiveTransportTimeouts`):
  the shortest read timeout that can never fire before one of our deadlines has passed. While bytes
  flow every deadline is exact; on a connection that falls completely silent after its headers, a
  deadline can fire up to ``|first_chunk - idle|`` late (never early). Equal windows are exact.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from .._errors import ClientConfigError
from ._errors import (
    APITimeoutError,
    ConnectTimeoutError,
    FirstChunkTimeoutError,
    IdleTimeoutError,
    TotalTimeoutError,
)

__all__ = ["Deadlines", "Timeouts"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The deadlines of one call, in seconds; ``None`` disables one.

    >>> Timeouts(first_chunk=30, idle=10, total=300)
    Timeouts(connect=5.0, first_chunk=30, idle=10, total=300)

    A plain number given as ``timeout=`` sets ``connect``, ``first_chunk`` and ``idle`` to it.
    """

    connect: float | None = 5.0
    first_chunk: float | None = 120.0
    idle: float | None = 120.0
    total: float | None = None

    def __post_init__(self) -> None:
        for name in ("connect", "first_chunk", "idle", "total"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ClientConfigError(f"Timeouts.{name} must be a positive number of seconds or None, not {value!r}")

    @classmethod
    def coerce(cls, value: Timeouts | float | None) -> Timeouts:
        if isinstance(value, Timeouts):
            return value
        if value is None:
            return cls(connect=None, first_chunk=None, idle=None, total=None)
        return cls(connect=value, first_chunk=value, idle=value, total=None)


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    # None is "no limit", so it wins.
    if a is None or b is None:
        return None
    return max(a, b)


class Deadlines:
    """The clock side of one call's :class:`Timeouts`, over all of its attempts.

    Instants are floats on ``clock``; a deadline that is not set is ``inf``. The nearest one is kept
    up to date as chunks arrive, so the per-read check is one comparison.
    """

    __slots__ = (
        "_chunk_seen",
        "_clock",
        "_first_chunk_at",
        "_headers_seen",
        "_idle",
        "_idle_at",
        "_next_at",
        "_streaming",
        "_total_at",
        "timeouts",
    )

    def __init__(self, timeouts: Timeouts, *, streaming: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeouts = timeouts
        self._clock = clock
        self._streaming = streaming
        self._idle = math.inf if timeouts.idle is None else timeouts.idle
        self._total_at = math.inf if timeouts.total is None else clock() + timeouts.total
        self._first_chunk_at = math.inf
        self._idle_at = math.inf
        self._next_at = self._total_at
        self._headers_seen = False
        self._chunk_seen = False

    def start_attempt(self) -> None:
        """A request is about to be sent: the first-chunk clock starts (again)."""
        first_chunk = self.timeouts.first_chunk
        self._first_chunk_at = math.inf if first_chunk is None else self._clock() + first_chunk
        self._idle_at = math.inf
        self._next_at = min(self._first_chunk_at, self._total_at)
        self._headers_seen = False
        self._chunk_seen = False

    def headers_arrived(self) -> None:
        self._headers_seen = True

    def chunk_arrived(self, now: float) -> None:
        self._chunk_seen = True
        idle_at = self._idle_at = now + self._idle
        total_at = self._total_at
        self._next_at = idle_at if idle_at < total_at else total_at

    def now(self) -> float:
        return self._clock()

    def seconds_left(self, now: float | None = None) -> float | None:
        """How long the next read may block before the nearest deadline; ``None`` for no limit."""
        if self._next_at == math.inf:
            return None
        return max(0.0, self._next_at - (self._clock() if now is None else now))

    def cancel_scope(self) -> anyio.CancelScope:
        """A cancel scope that ends at the nearest deadline, for the async loops."""
        left = self.seconds_left()
        return anyio.CancelScope(deadline=math.inf if left is None else anyio.current_time() + left)

    def passed(self, now: float) -> APITimeoutError | None:
        """The timeout error of a deadline that has passed at ``now``, if any."""
        if now < self._next_at:
            return None
        return self.expired()

    def expired(self) -> APITimeoutError:
        """The error for the nearest deadline; for when a read timed out."""
        timeouts = self.timeouts
        if self._next_at == math.inf:
            # The limit was not ours: a transport of an injected client with a timeout of its own.
            return FirstChunkTimeoutError("the transport timed out waiting for the server", seconds=0.0)
        if self._next_at == self._total_at and timeouts.total is not None:
            return self._error(TotalTimeoutError, timeouts.total)
        if self._chunk_seen and timeouts.idle is not None:
            return self._error(IdleTimeoutError, timeouts.idle)
        return self._error(FirstChunkTimeoutError, timeouts.first_chunk or 0.0)

    def connect_expired(self) -> APITimeoutError:
        connect, total = self.timeouts.connect, self.timeouts.total
        total_left = self._left(self._total_at)
        if total is not None and total_left is not None and (connect is None or total_left <= connect):
            return self._error(TotalTimeoutError, total)
        return self._error(ConnectTimeoutError, 0.0 if connect is None else connect)

    def allows_wait(self, seconds: float) -> bool:
        """Whether waiting ``seconds`` before a retry still leaves time before the total deadline."""
        total_left = self._left(self._total_at)
        return total_left is None or seconds < total_left

    def read_timeout(self, *, whole_response: bool = False) -> float | None:
        """The read timeout for a transport read phase (headers, or body) that starts now.

        It is the shortest one that never fires before a deadline passed. A read timeout counts from
        the last byte, never earlier than the last chunk, so it is safe as long as it is at least the
        window that applies: ``first_chunk`` until the first chunk, ``idle`` after it. The body of a
        stream spans both; ``whole_response`` asks for one value good for headers and body alike.
        """
        total_left = self._left(self._total_at)
        if self._chunk_seen:
            return _min(total_left, self.timeouts.idle)
        first_chunk_left = self._left(self._first_chunk_at)
        if self._streaming and (self._headers_seen or whole_response):
            return _min(total_left, _max(first_chunk_left, self.timeouts.idle))
        return _min(total_left, first_chunk_left)

    def transport_timeouts(self) -> LiveTransportTimeouts:
        """The value for httpx's ``timeout`` request extension."""
        connect = _min(self._left(self._total_at), self.timeouts.connect)
        return LiveTransportTimeouts(self, connect=connect)

    def _left(self, at: float) -> float | None:
        return None if at == math.inf else max(0.0, at - self._clock())

    def _error(self, kind: type[APITimeoutError], seconds: float) -> APITimeoutError:
        if kind is ConnectTimeoutError:
            message = f"could not connect within {seconds:g} s (connect timeout)"
        elif kind is FirstChunkTimeoutError:
            what = "chunk" if self._streaming else "response"
            message = f"no {what} within {seconds:g} s of sending the request (first-chunk timeout)"
        elif kind is IdleTimeoutError:
            message = f"no chunk for {seconds:g} s (idle timeout; keep-alive comments do not count)"
        else:
            message = f"the call took longer than {seconds:g} s (total timeout)"
        return kind(message, seconds=seconds)


class LiveTransportTimeouts(dict[str, float | None]):
    """httpx's ``timeout`` extension with a ``read`` entry computed when the transport looks it up.

    httpcore calls ``.get("read")`` as it starts reading the headers and again as it starts reading
    the body, so each phase gets :meth:`Deadlines.read_timeout` as of that moment. The stored entries
    are good for the whole response, so a transport that copies the dict or indexes it is safe too,
    only less tight. That order of lookups is httpcore's internals: pyproject.toml bounds httpcore's
    version and tests/test_workarounds.py fails when it changes.
    """

    __slots__ = ("_deadlines",)

    def __init__(self, deadlines: Deadlines, *, connect: float | None) -> None:
        read = deadlines.read_timeout(whole_response=True)
        super().__init__(connect=connect, read=read, write=read, pool=connect)
        self._deadlines = deadlines

    def get(self, key: str, default: float | None = None) -> float | None:  # type: ignore[override]
        if key == "read":
            return self._deadlines.read_timeout()
        return super().get(key, default)
