"""Admission for a deployment: as many generations at once as the replicas take, a bounded queue behind them.

The single-engine :class:`~chunkwise.server.Scheduler` counts one engine's sequences. Behind Ray Serve,
``capacity`` requests may run at once (replicas x requests per replica; each replica's engine admits their
sequences itself); the next ``queue_size`` wait here, first in first out, with the plain server's keep-alive
comments on their streams, and one more gets the same 429 with ``Retry-After``. Ray Serve's router
therefore never holds more than the replicas can take, and a request's wait is visible to its client
instead of hidden in the router.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ..server import QueueFullError, Ticket

__all__ = ["DeploymentAdmission"]


class DeploymentAdmission:
    """Implements :class:`~chunkwise.server.Admission` in requests; ``capacity`` is read at each decision."""

    def __init__(self, capacity: Callable[[], int], queue_size: int, *, retry_after: int) -> None:
        self._capacity = capacity
        self.queue_size = queue_size
        self.retry_after = retry_after
        self._admitted: set[Ticket] = set()
        self._queued: deque[Ticket] = deque()

    @property
    def capacity(self) -> int:
        return self._capacity()

    @property
    def running(self) -> int:
        return len(self._admitted)

    @property
    def queue_depth(self) -> int:
        return len(self._queued)

    @property
    def busy(self) -> bool:
        return len(self._admitted) >= self._capacity()

    def admit(self, weight: int = 1) -> Ticket:
        # Counted in requests, whatever their ``n``: each replica's engine admits their sequences itself.
        ticket = Ticket(1, self._on_release)
        if not self._queued and len(self._admitted) < self._capacity():
            self._admitted.add(ticket)
            ticket.grant()
        elif len(self._queued) >= self.queue_size:
            raise QueueFullError(self.queue_size, self.retry_after)
        else:
            self._queued.append(ticket)
        return ticket

    def _on_release(self, ticket: Ticket) -> None:
        if ticket in self._admitted:
            self._admitted.remove(ticket)
            while self._queued and len(self._admitted) < self._capacity():
                following = self._queued.popleft()
                self._admitted.add(following)
                following.grant()
        else:
            self._queued.remove(ticket)
