"""A node that joins a ``chunkwise gateway``: its signed registration, sent again as a heartbeat.

The loop runs beside the server on its event loop and never ends on its own: a gateway that is down,
slow or refusing is logged and tried again, sooner at first and then once per interval, so the node keeps
serving whatever the gateway does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import httpx

from ..registration import NodeRegistration, signed_registration
from ..signing import Signer, sui_address

__all__ = ["GatewayMembership"]

logger = logging.getLogger("chunkwise.server")


@dataclass(frozen=True, kw_only=True)
class GatewayMembership:
    """Where to join and as whom; :meth:`run` registers now and every ``interval`` seconds until cancelled."""

    #: The gateway's base URL (``http://host:port``; a trailing ``/v1`` is allowed).
    gateway_url: str
    signer: Signer
    name: str
    node_small_id: int
    country: str = ""
    #: Seconds between heartbeats; keep it well under the gateway's ``heartbeat_timeout``.
    interval: float = 10.0

    @property
    def endpoint(self) -> str:
        return self.gateway_url.rstrip("/").removesuffix("/v1") + "/v1/nodes"

    def registration(self, url: str, timestamp: int) -> bytes:
        data = NodeRegistration(
            node_small_id=self.node_small_id,
            public_address=sui_address(self.signer.public_key),
            country=self.country,
            name=self.name,
            url=url,
            timestamp=timestamp,
        )
        return signed_registration(self.signer, data)

    async def run(self, url: str) -> None:
        """Keep the node at ``url`` (its base URL as the gateway reaches it) registered."""
        last_timestamp = 0
        first_delay = min(1.0, self.interval)
        delay = first_delay
        joined = False
        timeout = httpx.Timeout(max(1.0, min(10.0, self.interval)))
        # The gateway is addressed directly: HTTP(S)_PROXY from the environment must not reroute it.
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            while True:
                # Strictly increasing, or the gateway takes the heartbeat for a replay.
                last_timestamp = max(int(time.time() * 1000), last_timestamp + 1)
                body = self.registration(url, last_timestamp)
                try:
                    response = await client.post(
                        self.endpoint, content=body, headers={"content-type": "application/json"}
                    )
                    problem = None if response.status_code == 200 else f"{response.status_code}: {response.text[:500]}"
                except Exception as exc:  # httpx's errors, or any other: the heartbeat never takes the node down
                    problem = f"{type(exc).__name__}: {exc}"
                if problem is None:
                    if not joined:
                        logger.info("joined the gateway %s as %s", self.endpoint, self.name)
                    joined = True
                    delay = first_delay
                    await asyncio.sleep(self.interval)
                    continue
                logger.warning("registration with %s failed (retry in %g s): %s", self.endpoint, delay, problem)
                joined = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.interval)
