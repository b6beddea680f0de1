"""Admission by capacity: up to ``capacity`` sequences run at once, everyone else waits in a bounded queue.

A request takes a :class:`Ticket` the moment it is admitted (so a full queue is a 429 before any response
starts), weighted by how many sequences it runs (``n``). It awaits :meth:`Ticket.wait` until the engine
has room for it and calls :meth:`Ticket.release` when it is done, cancelled or disconnected. Release hands
the freed room to the waiting tickets in order, synchronously, so no later request can slip past an
earlier one. With a capacity of 1 this is one generation at a time. Everything runs on the event loop;
nothing here blocks.
"""

from __future__ import annotations

from collections import deque

import anyio

from ._errors import QueueFullError

__all__ = ["Scheduler", "Ticket"]


class Ticket:
    """A request's place: waiting in the queue, running in the engine, or released."""

    __slots__ = ("_granted", "_released", "_scheduler", "weight")

    def __init__(self, scheduler: Scheduler, weight: int) -> None:
        self._scheduler = scheduler
        self._granted = anyio.Event()
        self._released = False
        #: The sequences this request runs.
        self.weight = weight

    @property
    def granted(self) -> bool:
        """This request may run (and has not released its room)."""
        return self._granted.is_set() and not self._released

    @property
    def waiting(self) -> bool:
        return not self._granted.is_set() and not self._released

    async def wait(self) -> None:
        """Return once this ticket may run. Cancelling the wait keeps the place in the queue."""
        await self._granted.wait()

    def release(self) -> None:
        """Leave the queue, or give the room back to the waiting tickets. Safe to call more than once."""
        if self._released:
            return
        self._released = True
        self._scheduler._on_release(self)

    def _grant(self) -> None:
        self._granted.set()


class Scheduler:
    """Admits requests to one engine: ``capacity`` running sequences, at most ``queue_size`` waiting requests."""

    def __init__(self, queue_size: int, *, retry_after: int, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, not {capacity}")
        self.queue_size = queue_size
        self.retry_after = retry_after
        self.capacity = capacity
        self._running = 0
        self._waiting: deque[Ticket] = deque()

    @property
    def queue_depth(self) -> int:
        """Requests waiting for room in the engine, not counting the running ones."""
        return len(self._waiting)

    @property
    def running(self) -> int:
        """Sequences of the requests that hold room in the engine."""
        return self._running

    @property
    def busy(self) -> bool:
        return self._running > 0

    def admit(self, weight: int = 1) -> Ticket:
        """A ticket that may run at once if the engine has room and nobody waits, else a place in the queue.

        ``weight`` above the capacity is counted as the whole capacity (such a request runs alone; the engine
        rejects what it cannot run at all). Raises :class:`QueueFullError` (429) when ``queue_size`` requests
        are already waiting.
        """
        ticket = Ticket(self, min(max(weight, 1), self.capacity))
        if not self._waiting and self._running + ticket.weight <= self.capacity:
            self._running += ticket.weight
            ticket._grant()
        elif len(self._waiting) >= self.queue_size:
            raise QueueFullError(self.queue_size, self.retry_after)
        else:
            self._waiting.append(ticket)
        return ticket

    def _on_release(self, ticket: Ticket) -> None:
        if ticket._granted.is_set():
            self._running -= ticket.weight
            while self._waiting and self._running + self._waiting[0].weight <= self.capacity:
                head = self._waiting.popleft()
                self._running += head.weight
                head._grant()
        else:
            self._waiting.remove(ticket)
