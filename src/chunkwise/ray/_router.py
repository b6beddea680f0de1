"""Prefix affinity for Ray Serve's router: requests whose prompts start alike go to the same replica.

Each replica's engine keeps the prompt prefix of its latest requests in its KV cache, so a request that lands
where its prefix already is skips most of its prompt evaluation. The router remembers which replica each
prefix (the first :data:`AFFINITY_CHARS` characters of the prompt) was sent to; a new prefix goes to the
replica that was sent a request least recently (then the shortest queue): its cache is the stalest, so the
new prefix displaces the least. Two conversations that alternate thus land on two replicas, where hashing
would put them on one half of the time. Affinity never overrides load: the preferred replica
is the first rank only while its queue is less than ``imbalance`` requests longer than the shortest one;
otherwise, and whenever it refuses (full), Ray Serve's power-of-two choice among the others decides.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import OrderedDict
from typing import Any

from ray.serve.request_router import FIFOMixin, PendingRequest, RequestRouter, RunningReplica

__all__ = ["PrefixAffinityRouter"]

logger = logging.getLogger("chunkwise.ray")

#: Characters of the prompt that identify a conversation's shared head (system prompt, first turns).
AFFINITY_CHARS = 256


class PrefixAffinityRouter(FIFOMixin, RequestRouter):  # type: ignore[misc]
    """A Ray Serve request router; configured with ``RequestRouterConfig(request_router_class=...)``."""

    def initialize_state(self, imbalance: int = 2, max_prefixes: int = 10_000, **kwargs: Any) -> None:
        self._imbalance = imbalance
        self._max_prefixes = max_prefixes
        #: Prefix digest -> the replica it was last sent to, least recently used first.
        self._owners: OrderedDict[bytes, str] = OrderedDict()
        #: Replica -> when it was last chosen (a counter, not a clock).
        self._last_chosen: dict[str, int] = {}
        self._choices = 0

    def _queue_length(self, replica: RunningReplica) -> int:
        # The router's own view of each replica's queue (probed, then counted up and down as it sends).
        length = self.replica_queue_len_cache.get(replica.replica_id)
        return int(length) if length is not None else 0

    def _remember(self, key: bytes, owner: str) -> None:
        self._owners.pop(key, None)
        self._owners[key] = owner
        if len(self._owners) > self._max_prefixes:
            self._owners.popitem(last=False)
        self._choices += 1
        self._last_chosen[owner] = self._choices

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        try:
            return self._rank(candidate_replicas, pending_request)
        except Exception:
            # An exception here would leave the request unrouted for good; any two replicas are better.
            logger.exception("prefix affinity failed; routing at random")
            return [random.sample(candidate_replicas, min(2, len(candidate_replicas)))]

    def _rank(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None
    ) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        prompt = getattr(pending_request.args[0], "prompt", None) if pending_request and pending_request.args else None
        others = list(candidate_replicas)
        random.shuffle(others)
        if not isinstance(prompt, str) or len(others) == 1:
            return [others[:2]]
        key = hashlib.blake2b(prompt[:AFFINITY_CHARS].encode(), digest_size=16).digest()
        by_name = {replica.replica_id.unique_id: replica for replica in others}
        preferred = by_name.get(self._owners.get(key, ""))
        if preferred is None:
            preferred = min(
                others,
                key=lambda replica: (
                    self._last_chosen.get(replica.replica_id.unique_id, 0),
                    self._queue_length(replica),
                ),
            )
        self._remember(key, preferred.replica_id.unique_id)
        others.remove(preferred)
        shortest = min(self._queue_length(replica) for replica in candidate_replicas)
        if self._queue_length(preferred) - shortest >= self._imbalance:
            return [others[:2], [preferred]]
        return [[preferred], others[:2]]
