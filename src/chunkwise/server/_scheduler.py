"""Admission by capacity: up to ``capacity`` sequences run at once, everyone else waits in a bounded queue.

The server's own :class:`~chunkwise.server.Admission`. A request's :class:`~chunkwise.server.Ticket` is
weighted by how many sequences it runs (``n``). Release hands the freed room to the waiting tickets in
order, synchronously, so no later request can slip past an earlier one. With a capacity of 1 this is one
generation at a time. Everything runs on the event loop; nothing here blocks.
"""

from __future__ import annotations

from collections import deque

from ._admission import Ticket
from ._errors import QueueFullError

__all__ = ["Scheduler"]


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
        ticket = Ticket(min(max(weight, 1), self.capacity), self._on_release)
        if not self._waiting and self._running + ticket.weight <= self.capacity:
            self._running += ticket.weight
            ticket.grant()
        elif len(self._waiting) >= self.queue_size:
            raise QueueFullError(self.queue_size, self.retry_after)
        else:
            self._waiting.append(ticket)
        return ticket

    def _on_release(self, ticket: Ticket) -> None:
        if ticket.was_granted:
            self._running -= ticket.weight
            while self._waiting and self._running + self._waiting[0].weight <= self.capacity:
                head = self._waiting.popleft()
                self._running += head.weight
                head.grant()
        else:
            self._waiting.remove(ticket)
