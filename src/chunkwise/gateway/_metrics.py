"""Prometheus metrics of the gateway, by upstream, model and key (the key's name, never its secret)."""

from __future__ import annotations

from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from ..edge import AppMetrics

__all__ = ["GatewayMetrics"]

_Metric = TypeVar("_Metric", Counter, Gauge, Histogram)

_TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class GatewayMetrics(AppMetrics):
    def __init__(self) -> None:
        super().__init__()
        self.requests = self.counter(
            "chunkwise_gateway_requests",
            "Requests answered, by upstream (empty when none was reached), model, key and HTTP status.",
            ("upstream", "model", "key", "status"),
        )
        self.errors = self.counter(
            "chunkwise_gateway_upstream_errors",
            "Upstream failures by kind: connect, status_5xx, status_429, mid_stream, cut_short.",
            ("upstream", "model", "kind"),
        )
        self.refusals = self.counter(
            "chunkwise_gateway_refusals", "Requests refused by the gateway itself, by reason code.", ("code",)
        )
        self.time_to_first_token = self.histogram(
            "chunkwise_gateway_time_to_first_token_seconds",
            "From the request's arrival to the first byte of the upstream's answer sent on.",
            ("upstream", "model"),
            buckets=_TTFT_BUCKETS,
        )
        self.tokens = self.counter(
            "chunkwise_gateway_tokens",
            "Tokens by kind (prompt, completion), from the upstreams' usage or counted from the stream.",
            ("upstream", "model", "key", "kind"),
        )
        self.outstanding = self.gauge(
            "chunkwise_gateway_outstanding_requests", "Requests sent to an upstream and not finished.", ("upstream",)
        )
        self.ejections = self.counter(
            "chunkwise_gateway_ejections",
            "Times an upstream was taken out of rotation after a connect error or a 5xx.",
            ("upstream",),
        )
        self.healthy = self.gauge(
            "chunkwise_gateway_upstream_healthy", "1 while the upstream passes its active health check.", ("upstream",)
        )
        self.cancelled = self.counter(
            "chunkwise_gateway_cancelled_requests",
            "Streams whose client went away before the end.",
            ("upstream", "model", "key"),
        )

        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def child(self, metric: _Metric, *labels: str) -> _Metric:
        """``metric.labels(*labels)``, kept: the library's own lookup validates and copies the labels every
        time, which the per-request updates need not pay for. A child lives as long as the metric keeps it."""
        key = (metric, labels)
        found: _Metric | None = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found
