"""Prefix affinity for Ray Serve's router: requests whose prompts start alike go to the same replica.

Each replica's engine keeps the prompt prefix of its last requests in its KV cache, so a request that lands
where its prefix already is skips most of its prompt evaluation. The preferred replica of a prefix is
chosen by rendezvous hashing (highest hash of prefix and replica id), which stays stable as replicas come
and go. Affinity never overrides load: the router's first rank is the preferred replica only while its
queue is not ``imbalance`` requests longer than the shortest one; otherwise, and whenever the preferred
replica refuses (full), Ray Serve's power-of-two choice among the rest decides.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from ray.serve.request_router import FIFOMixin, PendingRequest, RequestRouter, RunningReplica

__all__ = ["PrefixAffinityRouter"]

#: Characters of the prompt that decide the preferred replica (the shared head of a conversation).
AFFINITY_CHARS = 256


def _score(prefix: str, replica: RunningReplica) -> bytes:
    return hashlib.blake2b(f"{prefix}\0{replica.replica_id.unique_id}".encode(), digest_size=8).digest()


class PrefixAffinityRouter(FIFOMixin, RequestRouter):  # type: ignore[misc]
    """A Ray Serve request router; configured with ``RequestRouterConfig(request_router_class=...)``."""

    def initialize_state(self, imbalance: int = 2, **kwargs: Any) -> None:
        self._imbalance = imbalance

    def _queue_length(self, replica: RunningReplica) -> int:
        # The router's cache of probed queue lengths (0 while unknown); Ray Serve keeps it current.
        length = self._replica_queue_len_cache.get(replica.replica_id)
        return int(length) if length is not None else 0

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        prompt = getattr(pending_request.args[0], "prompt", None) if pending_request and pending_request.args else None
        others = list(candidate_replicas)
        random.shuffle(others)
        if not isinstance(prompt, str) or len(others) == 1:
            return [others[:2]]
        prefix = prompt[:AFFINITY_CHARS]
        preferred = max(others, key=lambda replica: _score(prefix, replica))
        others.remove(preferred)
        shortest = min(self._queue_length(replica) for replica in candidate_replicas)
        if self._queue_length(preferred) - shortest >= self._imbalance:
            return [others[:2], [preferred]]
        return [[preferred], others[:2]]
