"""The server's Prometheus metrics, and the engine's step-loop figures read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..edge import AppMetrics
from ..engine import BatchingHistogram, BatchingStats

__all__ = ["ServerMetrics"]

# Time to first token on a small CPU model ranges from a few ms (idle engine) to minutes (deep queue).
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServerMetrics(AppMetrics):
    """Every metric the server exports; exposed at ``GET /metrics``."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = self.counter(
            "chunkwise_requests", "HTTP requests answered, by route and status code.", ("route", "status")
        )
        self.time_to_first_token = self.histogram(
            "chunkwise_time_to_first_token_seconds",
            "From receiving a generation request to its first chunk, queueing included.",
            ("endpoint",),
            buckets=_TTFT_BUCKETS,
        )
        self.prompt_tokens = self.counter(
            "chunkwise_prompt_tokens", "Prompt tokens of the generations that ran.", ("endpoint",)
        )
        self.generated_tokens = self.counter(
            "chunkwise_generated_tokens",
            "Completion tokens made, cancelled and failed generations included.",
            ("endpoint",),
        )
        self.active_streams = self.gauge(
            "chunkwise_active_streams", "Streaming responses currently open, waiting or generating."
        )
        self.queue_depth = self.gauge(
            "chunkwise_queue_depth", "Requests waiting for the engine, not counting the one generating."
        )
        self.cancelled = self.counter(
            "chunkwise_cancelled_requests",
            "Generation requests whose client went away, by where they were: queued or generating.",
            ("endpoint", "stage"),
        )
        self.stalled = self.counter(
            "chunkwise_stalled_streams",
            "Responses cancelled because their client read nothing for the write timeout.",
            ("endpoint",),
        )
        self.engine_errors = self.counter(
            "chunkwise_engine_errors", "Generations that failed inside the engine.", ("endpoint",)
        )

    def watch_engine(self, engine: object) -> None:
        """Export the step loop's figures of an engine that reports them (:class:`ReportsBatching`)."""
        if isinstance(engine, ReportsBatching):
            self.registry.register(_BatchingCollector(engine))


@runtime_checkable
class ReportsBatching(Protocol):
    def batching_stats(self) -> BatchingStats: ...


def _histogram(name: str, documentation: str, histogram: BatchingHistogram) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip([*map(str, histogram.bounds), "+Inf"], histogram.counts, strict=True):
        cumulative += count
        buckets.append((bound, cumulative))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=histogram.total)


class _BatchingCollector(Collector):
    """Reads the engine's counters at scrape time; the worker thread never touches Prometheus."""

    def __init__(self, engine: ReportsBatching) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        stats = self._engine.batching_stats()
        yield GaugeMetricFamily(
            "chunkwise_running_sequences", "Sequences decoding or reading their prompt.", value=stats.running_sequences
        )
        yield GaugeMetricFamily(
            "chunkwise_engine_waiting_requests",
            "Requests handed to the engine and waiting for free sequences.",
            value=stats.waiting_requests,
        )
        yield GaugeMetricFamily(
            "chunkwise_kv_cells_used",
            "KV cache cells holding tokens: running sequences and the prefix cache.",
            value=stats.kv_cells_used,
        )
        yield GaugeMetricFamily("chunkwise_kv_cells", "KV cache cells in all.", value=stats.kv_cells_total)
        yield CounterMetricFamily(
            "chunkwise_prefix_cache_hits",
            "Requests whose prompt started from tokens already in the KV cache.",
            value=stats.prefix_cache_hits,
        )
        yield CounterMetricFamily(
            "chunkwise_prefix_cache_tokens",
            "Prompt tokens not evaluated again thanks to the prefix cache.",
            value=stats.prefix_cache_tokens,
        )
        yield CounterMetricFamily(
            "chunkwise_draft_tokens",
            "Guessed tokens verified in decode steps (speculative decoding).",
            value=stats.drafted_tokens,
        )
        yield CounterMetricFamily(
            "chunkwise_draft_accepted_tokens",
            "Guessed tokens the output kept: the acceptance rate is this over chunkwise_draft_tokens_total.",
            value=stats.accepted_tokens,
        )
        yield CounterMetricFamily(
            "chunkwise_jump_forward_tokens",
            "Tokens guessed from the text a grammar forces next (jump-forward), verified in decode steps.",
            value=stats.forced_tokens,
        )
        yield CounterMetricFamily(
            "chunkwise_jump_forward_accepted_tokens",
            "Jump-forward tokens the output kept (the model writes forced text in tokens of its choosing).",
            value=stats.forced_accepted_tokens,
        )
        yield _histogram(
            "chunkwise_batch_size", "Sequences decoded together in one step of the engine.", stats.batch_size
        )
        yield _histogram(
            "chunkwise_step_seconds",
            "Time of one engine step: the shared decode, sampling and any prompt pieces.",
            stats.step_seconds,
        )
