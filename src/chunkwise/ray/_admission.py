"""Admission for a deployment: as many generations at once as the replicas take, a bounded queue behind them.

The single-engine :class:`~chunkwise.server.Scheduler` counts one engine's sequences. Behind Ray Serve,
``capacity`` requests may run at once (replicas x requests per replica; each replica's engine admits their
sequences itself); the next ``queue_size`` wait here, first in first out, with the plain server's keep-alive
comments on their streams, and one more gets the same 429 with ``Retry-After``. Ray Serve's router
therefore never holds more than the replicas can take, and a request's wait is visible to its client
instead of hidden in the router.
"""

from __future__ import annotations

from collections.abc import Callable

from ..server import QueuedAdmission

__all__ = ["DeploymentAdmission"]


class DeploymentAdmission(QueuedAdmission):
    """Counts requests, whatever their ``n`` (each replica's engine admits their sequences itself), against a
    ``capacity`` read at each decision."""

    def __init__(self, capacity: Callable[[], int], queue_size: int, *, retry_after: int) -> None:
        super().__init__(queue_size, retry_after=retry_after)
        self._capacity = capacity

    @property
    def capacity(self) -> int:
        return self._capacity()

    @property
    def busy(self) -> bool:
        return self._running >= self._capacity()

    def _weight(self, requested: int) -> int:
        return 1
