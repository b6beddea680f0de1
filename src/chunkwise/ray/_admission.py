"""Admission for a deployment: many generations at once, a bounded number beyond what the replicas take.

The single-engine :class:`~chunkwise.server._scheduler.Scheduler` runs one generation at a time. Behind Ray
Serve, queueing is the router's job (it holds a request until a replica has room), so this scheduler grants
every ticket at once and only bounds the total: ``capacity()`` running (replicas x ongoing requests per
replica) plus ``queue_size`` waiting; one more gets the same 429 with ``Retry-After`` as the plain server.
"""

from __future__ import annotations

from collections.abc import Callable

from ..server._errors import QueueFullError
from ..server._scheduler import Scheduler, Ticket

__all__ = ["DeploymentAdmission"]


class DeploymentAdmission(Scheduler):
    def __init__(self, capacity: Callable[[], int], queue_size: int, *, retry_after: int) -> None:
        super().__init__(queue_size, retry_after=retry_after)
        self._capacity = capacity
        self._admitted = 0

    @property
    def queue_depth(self) -> int:
        """Admitted requests beyond what the replicas can run at once: they wait in Ray Serve's router."""
        return max(0, self._admitted - self._capacity())

    @property
    def busy(self) -> bool:
        return self._admitted >= self._capacity()

    def admit(self) -> Ticket:
        if self._admitted >= self._capacity() + self.queue_size:
            raise QueueFullError(self.queue_size, self.retry_after)
        ticket = Ticket(self)
        self._admitted += 1
        ticket._grant()
        return ticket

    def _on_release(self, ticket: Ticket) -> None:
        self._admitted -= 1
