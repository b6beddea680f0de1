"""Prometheus metrics of an app: one registry per app, so that two apps in one process never share counters.

The server's and the gateway's metrics derive from :class:`AppMetrics`, which owns the registry, makes each
metric in it from one line (name, help, labels) and answers ``GET /metrics``.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.responses import Response

__all__ = ["AppMetrics"]


class AppMetrics:
    """A registry of its own, and the metrics a subclass declares in it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, documentation, labels, registry=self.registry)

    def histogram(self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]) -> Histogram:
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def response(self) -> Response:
        """The ``GET /metrics`` answer: every metric in Prometheus' text format."""
        return Response(self.exposition(), media_type=CONTENT_TYPE_LATEST)
