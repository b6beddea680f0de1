"""What the ingress knows about the deployment, exported on ``/metrics``.

Two sources: the requests this ingress has in flight on each replica (exact, updated as streams start and
end), and what each replica last said about itself in the header of an answer (its own running count,
cancellations and tokens, which also cover other ingresses). The replica count by state comes from Ray
Serve's controller, polled in the background so that a scrape never waits on the cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ._messages import ReplicaHeader

__all__ = ["DeploymentLoad"]


@dataclass
class _Replica:
    header: ReplicaHeader
    in_flight: int = 0
    requests: int = 0


@dataclass(eq=False)  # a Prometheus collector must be hashable
class DeploymentLoad:
    """Per-replica load as seen from the ingress; also a Prometheus collector."""

    #: Replica counts by Ray Serve state (RUNNING, STARTING, ...); None until the first poll answers.
    replica_states: Callable[[], dict[str, int] | None] = lambda: None
    _replicas: dict[str, _Replica] = field(default_factory=dict)
    retries: int = 0
    replica_failures: int = 0

    def started(self, header: ReplicaHeader) -> None:
        replica = self._replicas.get(header.replica)
        if replica is None:
            replica = self._replicas[header.replica] = _Replica(header)
        replica.header = header
        replica.in_flight += 1
        replica.requests += 1

    def finished(self, header: ReplicaHeader) -> None:
        self._replicas[header.replica].in_flight -= 1

    def in_flight(self) -> dict[str, int]:
        return {name: replica.in_flight for name, replica in self._replicas.items()}

    def collect(self) -> Iterator[Metric]:
        states = self.replica_states()
        replicas = GaugeMetricFamily(
            "chunkwise_ray_replicas", "Replicas of the engine deployment, by Ray Serve state.", labels=["state"]
        )
        for state, count in sorted((states or {}).items()):
            replicas.add_metric([state], count)
        yield replicas

        in_flight = GaugeMetricFamily(
            "chunkwise_ray_replica_in_flight",
            "Requests this ingress has running or queued on each replica.",
            labels=["replica"],
        )
        requests = CounterMetricFamily(
            "chunkwise_ray_replica_requests", "Requests this ingress sent to each replica.", labels=["replica"]
        )
        ongoing = GaugeMetricFamily(
            "chunkwise_ray_replica_reported_ongoing",
            "Requests the replica was running, as it reported with its latest answer (all ingresses).",
            labels=["replica"],
        )
        cancelled = CounterMetricFamily(
            "chunkwise_ray_replica_cancelled",
            "Generations the replica stopped early (client gone), as of its latest answer.",
            labels=["replica"],
        )
        tokens = CounterMetricFamily(
            "chunkwise_ray_replica_generated_tokens",
            "Completion tokens the replica made, as of its latest answer.",
            labels=["replica"],
        )
        info = GaugeMetricFamily(
            "chunkwise_ray_replica_info", "Where each replica runs.", labels=["replica", "node", "pid"]
        )
        for name, replica in sorted(self._replicas.items()):
            header = replica.header
            in_flight.add_metric([name], replica.in_flight)
            requests.add_metric([name], replica.requests)
            ongoing.add_metric([name], header.ongoing)
            cancelled.add_metric([name], header.cancelled)
            tokens.add_metric([name], header.generated_tokens)
            info.add_metric([name, header.node, str(header.pid)], 1)
        yield from (in_flight, requests, ongoing, cancelled, tokens, info)

        yield CounterMetricFamily(
            "chunkwise_ray_retries",
            "Requests sent again to another replica because theirs failed before any output.",
            value=self.retries,
        )
        yield CounterMetricFamily(
            "chunkwise_ray_replica_failures",
            "Streams that a replica failure ended with an error frame.",
            value=self.replica_failures,
        )
