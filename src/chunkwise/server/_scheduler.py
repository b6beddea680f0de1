"""Admission by capacity: what fits in ``capacity`` runs at once, everyone else waits in a bounded queue.

:class:`QueuedAdmission` is the queue both admissions keep; the server's own :class:`Scheduler` weighs a
request's :class:`~chunkwise.server.Ticket` by how many sequences it runs (``n``) against one engine, and
Ray's ``DeploymentAdmission`` counts requests against a deployment. Release hands the freed room to the
waiting tickets in order, synchronously, so no later request can slip past an earlier one. With a capacity
of 1 this is one generation at a time. Everything runs on the event loop; nothing here blocks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque

from ._admission import Ticket
from ._errors import QueueFullError

__all__ = ["QueuedAdmission", "Scheduler"]


class QueuedAdmission(ABC):
    """An :class:`~chunkwise.server.Admission` in first-in-first-out order: a ticket runs at once if its weight
    fits beside the running ones and nobody waits, else takes a place in a queue of at most ``queue_size``.

    A subclass says how much may run (:attr:`capacity`, read at each decision), what a request weighs
    (:meth:`_weight`) and when it is :attr:`busy`.
    """

    def __init__(self, queue_size: int, *, retry_after: int) -> None:
        self.queue_size = queue_size
        self.retry_after = retry_after
        self._running = 0
        self._waiting: deque[Ticket] = deque()

    @property
    @abstractmethod
    def capacity(self) -> int: ...

    @property
    @abstractmethod
    def busy(self) -> bool: ...

    @abstractmethod
    def _weight(self, requested: int) -> int:
        """What a request of ``requested`` sequences counts for against the capacity."""

    @property
    def queue_depth(self) -> int:
        """Requests waiting for room, not counting the running ones."""
        return len(self._waiting)

    @property
    def running(self) -> int:
        """What the requests that hold room count for."""
        return self._running

    def admit(self, weight: int = 1) -> Ticket:
        """A ticket that may run at once if there is room and nobody waits, else a place in the queue.

        Raises :class:`QueueFullError` (429) when ``queue_size`` requests are already waiting.
        """
        ticket = Ticket(self._weight(weight), self._on_release)
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


class Scheduler(QueuedAdmission):
    """Admits requests to one engine: ``capacity`` running sequences, at most ``queue_size`` waiting requests."""

    def __init__(self, queue_size: int, *, retry_after: int, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, not {capacity}")
        super().__init__(queue_size, retry_after=retry_after)
        self._capacity = capacity

    @property
    def capacity(self) -> int:
        """Sequences the engine decodes together."""
        return self._capacity

    @property
    def busy(self) -> bool:
        return self._running > 0

    def _weight(self, requested: int) -> int:
        # Above the capacity counts as the whole capacity: such a request runs alone (the engine rejects what it
        # cannot run at all).
        return min(max(requested, 1), self._capacity)
