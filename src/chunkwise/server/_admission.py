"""Admission: when a request may run. The seam between the routes and whatever decides it.

A request takes a :class:`Ticket` from an :class:`Admission` the moment it arrives (so a full queue is a 429
before any response starts), awaits :meth:`Ticket.wait` until it may run, and calls :meth:`Ticket.release`
when it is done, cancelled or disconnected. The server's own :class:`~chunkwise.server.Scheduler` counts one
engine's sequences; Ray's ``DeploymentAdmission`` counts a deployment's requests. Both implement
:class:`Admission` on the one first-in-first-out queue of :class:`~chunkwise.server.QueuedAdmission`;
neither derives from the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["Admission", "Ticket"]


class Ticket:
    """A request's place: waiting in the queue, running, or released.

    ``on_release`` is the admission's hook: it runs once, on the first :meth:`release`.
    """

    __slots__ = ("_granted", "_on_release", "_released", "weight")

    def __init__(self, weight: int, on_release: Callable[[Ticket], None]) -> None:
        self._granted = anyio.Event()
        self._released = False
        self._on_release = on_release
        #: What this request counts for against the capacity (sequences, or 1 for a request).
        self.weight = weight

    @property
    def granted(self) -> bool:
        """This request may run (and has not released its room)."""
        return self._granted.is_set() and not self._released

    @property
    def waiting(self) -> bool:
        return not self._granted.is_set() and not self._released

    @property
    def was_granted(self) -> bool:
        """This request was let run at some point, released or not (for the admission's bookkeeping)."""
        return self._granted.is_set()

    async def wait(self) -> None:
        """Return once this ticket may run. Cancelling the wait keeps the place in the queue."""
        await self._granted.wait()

    def grant(self) -> None:
        """Let this request run; called by the admission that issued it."""
        self._granted.set()

    def release(self) -> None:
        """Leave the queue, or give the room back to the waiting tickets. Safe to call more than once."""
        if self._released:
            return
        self._released = True
        self._on_release(self)


@runtime_checkable
class Admission(Protocol):
    """Decides when requests run: up to :attr:`capacity` at once, at most ``queue_size`` waiting behind them."""

    @property
    def capacity(self) -> int:
        """How much may run at once, in the unit the tickets' ``weight`` counts."""
        ...

    @property
    def running(self) -> int:
        """How much of :attr:`capacity` the granted, unreleased tickets hold."""
        ...

    @property
    def queue_depth(self) -> int:
        """Requests waiting for their turn, not counting the running ones."""
        ...

    @property
    def busy(self) -> bool:
        """Whether anything runs (the plain scheduler) or nothing more can (a deployment)."""
        ...

    def admit(self, weight: int = 1) -> Ticket:
        """A ticket that may run at once or waits its turn; raises ``QueueFullError`` (429) when the queue is full."""
        ...
