"""One generation at a time, everyone else in a bounded first-in-first-out queue.

A request takes a :class:`Ticket` the moment it is admitted (so a full queue is a 429 before any
response starts), awaits :meth:`Ticket.wait` until the engine is its own, and calls
:meth:`Ticket.release` when it is done, cancelled or disconnected. Release hands the engine to the
next ticket synchronously, so no other request can slip in between and the next generation starts on
the very next loop iteration. Everything runs on the event loop; nothing here blocks.
"""

from __future__ import annotations

from collections import deque

import anyio

from ._errors import QueueFullError

__all__ = ["Scheduler", "Ticket"]


class Ticket:
    """A request's place: waiting in the queue, holding the engine, or released."""

    __slots__ = ("_granted", "_released", "_scheduler")

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._granted = anyio.Event()
        self._released = False

    @property
    def granted(self) -> bool:
        """This request holds the engine (and has not released it)."""
        return self._granted.is_set() and not self._released

    @property
    def waiting(self) -> bool:
        return not self._granted.is_set() and not self._released

    async def wait(self) -> None:
        """Return once this ticket holds the engine. Cancelling the wait keeps the place in the queue."""
        await self._granted.wait()

    def release(self) -> None:
        """Leave the queue, or hand the engine to the next ticket. Safe to call more than once."""
        if self._released:
            return
        self._released = True
        self._scheduler._on_release(self)

    def _grant(self) -> None:
        self._granted.set()


class Scheduler:
    """Admits requests to a single engine: one holder, at most ``queue_size`` waiters."""

    def __init__(self, queue_size: int, *, retry_after: int) -> None:
        self.queue_size = queue_size
        self.retry_after = retry_after
        self._holder: Ticket | None = None
        self._waiting: deque[Ticket] = deque()

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the engine, not counting the one that holds it."""
        return len(self._waiting)

    @property
    def busy(self) -> bool:
        return self._holder is not None

    def admit(self) -> Ticket:
        """A ticket that already holds the engine if it is free, else a place in the queue.

        Raises :class:`QueueFullError` (429) when ``queue_size`` requests are already waiting.
        """
        ticket = Ticket(self)
        if self._holder is None and not self._waiting:
            self._holder = ticket
            ticket._grant()
        elif len(self._waiting) >= self.queue_size:
            raise QueueFullError(self.queue_size, self.retry_after)
        else:
            self._waiting.append(ticket)
        return ticket

    def _on_release(self, ticket: Ticket) -> None:
        if ticket is self._holder:
            self._holder = None
            if self._waiting:
                self._holder = self._waiting.popleft()
                self._holder._grant()
        else:
            self._waiting.remove(ticket)
