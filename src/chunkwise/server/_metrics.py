"""Prometheus metrics, one registry per app so that two apps in one process never share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["METRICS_CONTENT_TYPE", "ServerMetrics"]

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

# Time to first token on a small CPU model ranges from a few ms (idle engine) to minutes (deep queue).
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServerMetrics:
    """Every metric the server exports; exposed at ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "chunkwise_requests",
            "HTTP requests answered, by route and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "chunkwise_time_to_first_token_seconds",
            "From receiving a generation request to its first chunk, queueing included.",
            ["endpoint"],
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "chunkwise_prompt_tokens",
            "Prompt tokens of the generations that ran.",
            ["endpoint"],
            registry=self.registry,
        )
        self.generated_tokens = Counter(
            "chunkwise_generated_tokens",
            "Completion tokens made, cancelled and failed generations included.",
            ["endpoint"],
            registry=self.registry,
        )
        self.active_streams = Gauge(
            "chunkwise_active_streams",
            "Streaming responses currently open, waiting or generating.",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "chunkwise_queue_depth",
            "Requests waiting for the engine, not counting the one generating.",
            registry=self.registry,
        )
        self.cancelled = Counter(
            "chunkwise_cancelled_requests",
            "Generation requests whose client went away, by where they were: queued or generating.",
            ["endpoint", "stage"],
            registry=self.registry,
        )
        self.stalled = Counter(
            "chunkwise_stalled_streams",
            "Responses cancelled because their client read nothing for the write timeout.",
            ["endpoint"],
            registry=self.registry,
        )
        self.engine_errors = Counter(
            "chunkwise_engine_errors",
            "Generations that failed inside the engine.",
            ["endpoint"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
