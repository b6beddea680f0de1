"""Active health checks of the upstreams, and the gateway's own ``GET /health`` report."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import msgspec

from ._config import GatewaySettings
from ._metrics import GatewayMetrics
from ._routing import Router, Upstream

__all__ = ["HealthChecker"]

logger = logging.getLogger("chunkwise.gateway")


class HealthChecker:
    """Asks every upstream for ``/models`` now and then: one that fails leaves rotation until it answers again.

    An upstream configured without ``models`` learns them from that answer. Health checks are off the hot
    path, so they use httpx (proxied requests use the lean client of ``_upstream``).
    """

    def __init__(self, router: Router, metrics: GatewayMetrics, settings: GatewaySettings) -> None:
        self._router = router
        self._metrics = metrics
        self._interval = settings.health_check_interval
        self._timeout = httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout, pool=None)
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        for upstream in router.upstreams:
            metrics.healthy.labels(upstream.name).set(1)

    async def start(self) -> None:
        # Upstreams are addressed directly: HTTP(S)_PROXY from the environment must not reroute them.
        self._client = httpx.AsyncClient(timeout=self._timeout, trust_env=False)
        # One round first, so that upstreams configured without `models` are known before traffic.
        if self._interval > 0:
            await self.check_all()
        else:
            await asyncio.gather(*(self.check(up) for up in self._router.upstreams if not up.config.models))
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(upstream) for upstream in self._router.upstreams))

    async def check(self, upstream: Upstream) -> None:
        """One upstream's check now: its health, and its models if it was configured without them."""
        assert self._client is not None, "the gateway has not started"
        headers = {"authorization": f"Bearer {upstream.api_key}"} if upstream.api_key else {}
        timeout = min(5.0, max(0.5, self._interval))
        try:
            response = await self._client.get(f"{upstream.url}/models", headers=headers, timeout=timeout)
            healthy = response.status_code == 200
            if healthy and not upstream.config.models:
                listed = msgspec.json.decode(response.content)
                upstream.models = frozenset(
                    entry["id"] for entry in listed.get("data", []) if isinstance(entry.get("id"), str)
                )
        except (httpx.HTTPError, msgspec.DecodeError, AttributeError, TypeError):
            healthy = False
        if healthy != upstream.healthy:
            logger.warning("upstream %s is %s", upstream.name, "healthy again" if healthy else "unhealthy")
        upstream.healthy = healthy
        self._metrics.healthy.labels(upstream.name).set(1 if healthy else 0)

    async def _loop(self) -> None:
        if self._interval <= 0:
            return
        while True:
            await asyncio.sleep(self._interval)
            await self.check_all()

    def report(self) -> tuple[dict[str, Any], bool]:
        """The body of ``GET /health``, and whether any upstream can take a request now."""
        now = time.monotonic()
        upstreams = {
            upstream.name: {
                "healthy": upstream.healthy,
                "available": upstream.available(now),
                "outstanding": upstream.outstanding,
                "models": sorted(upstream.models),
            }
            for upstream in self._router.upstreams
        }
        ok = any(upstream.available(now) for upstream in self._router.upstreams)
        return {"status": "ok" if ok else "degraded", "upstreams": upstreams}, ok
