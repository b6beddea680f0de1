"""Nodes that join the gateway: ``POST /v1/nodes`` admits trusted signers into the router's pool.

A registration (see :mod:`chunkwise.registration`) signed by a key in ``[nodes] trusted`` makes its node
an upstream like a TOML one: routed, health-checked, ejected, with the models its ``GET /v1/models``
lists. Each registration is also its heartbeat; a node that sends none for ``heartbeat_timeout`` leaves
the pool, and so does one whose key leaves the trust list. The trust list is read again whenever the
config file changes (``chunkwise nodes allow/revoke`` edit it), so a running gateway needs no restart.

The node's X25519 key is learnt from its own answer to ``POST /v1/nodes/lock`` as the gateway relays it;
a confidential envelope names that key, and goes to the node that holds it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import msgspec

from .._errors import BadRequestError, ConflictError, NotFoundError
from ..confidential import NodesCreateLockResponse
from ..registration import verify_registration
from ..signing import decode_public_key, split_signed_json
from ._config import ConfigError, NodesConfig, UpstreamConfig, load_config
from ._health import HealthChecker
from ._routing import Router, Upstream

__all__ = ["Node", "NodeRegistry"]

logger = logging.getLogger("chunkwise.gateway")

_lock_decoder = msgspec.json.Decoder(NodesCreateLockResponse)


class Node:
    """A joined node: its upstream in the router, its signing key, and when it was last heard from."""

    __slots__ = ("dh_public_key", "last_seen", "node_small_id", "public_key", "upstream")

    def __init__(self, upstream: Upstream, public_key: bytes, node_small_id: int) -> None:
        self.upstream = upstream
        self.public_key = public_key
        self.node_small_id = node_small_id
        self.last_seen = time.monotonic()
        #: The X25519 key (base64) of the node's last lock answer: confidential envelopes sealed to it go here.
        self.dh_public_key: str | None = None


class NodeRegistry:
    """The joined nodes; ``config`` is ``None`` for a gateway that takes none (``POST /v1/nodes`` is a 404)."""

    def __init__(self, config: NodesConfig | None, path: Path | None, router: Router, health: HealthChecker) -> None:
        self._config = config
        self._path = path
        self._router = router
        self._health = health
        self._trusted = _decoded(config.trusted if config is not None else ())
        self._file_stamp = self._stamp()
        self._last_timestamp: dict[bytes, int] = {}
        self.nodes: dict[bytes, Node] = {}
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._config is not None:
            self._task = asyncio.create_task(self._sweep_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # --- registration ---------------------------------------------------------------------------------------

    async def register(self, body: bytes) -> dict[str, Any]:
        """Check a registration and admit (or refresh) its node; the body of the answer."""
        config = self._config
        if config is None:
            raise NotFoundError(
                "This gateway takes no nodes: its config has no [nodes] table.", code="nodes_not_enabled"
            )
        self.refresh_trust()
        verified = verify_registration(
            body,
            trusted=self._trusted,
            now_ms=int(time.time() * 1000),
            max_skew_ms=int(config.max_clock_skew * 1000),
            last_timestamp=self._last_timestamp,
        )
        registration = verified.registration
        if registration.url is None or registration.name is None:
            return {"message": "Success"}  # Atoma's shape: a trusted signer, but no address to route to
        key = verified.public_key
        url = registration.url.rstrip("/") + "/v1"
        node = self.nodes.get(key)
        if node is None or node.upstream.url != url or node.upstream.name != registration.name:
            if any(
                up.name == registration.name and (node is None or up is not node.upstream)
                for up in self._router.upstreams
            ):
                raise ConflictError(
                    f"Another upstream of this gateway is named {registration.name!r}; pick another --node-name.",
                    code="node_name_taken",
                )
            try:
                upstream = Upstream(UpstreamConfig(name=registration.name, url=url))
            except ValueError as exc:
                raise BadRequestError(f"`url` cannot be used: {exc}.", param="url") from None
            await self._health.check(upstream)
            node = self._replace(key, Node(upstream, key, registration.node_small_id))
            logger.info("node %s joined from %s (models: %s)", upstream.name, url, ", ".join(sorted(upstream.models)))
        else:
            await self._health.check(node.upstream)  # a heartbeat is a health check too, and refreshes the models
        node.node_small_id = registration.node_small_id
        node.last_seen = time.monotonic()
        upstream = node.upstream
        return {
            "message": "Success",
            "name": upstream.name,
            "healthy": upstream.healthy,
            "models": sorted(upstream.models),
            "heartbeat_timeout": config.heartbeat_timeout,
        }

    def _replace(self, key: bytes, node: Node) -> Node:
        old = self.nodes.get(key)
        if old is not None:
            self._drop(old)
        self.nodes[key] = node
        self._router.add(node.upstream)
        return node

    def _drop(self, node: Node) -> None:
        if node.upstream in self._router.upstreams:
            self._router.remove(node.upstream)
        if self.nodes.get(node.public_key) is node:
            del self.nodes[node.public_key]

    # --- routing --------------------------------------------------------------------------------------------

    def lock_candidates(self, model: str) -> list[Upstream]:
        """The joined nodes that serve ``model``, best first."""
        joined = {id(node.upstream) for node in self.nodes.values()}
        return [upstream for upstream in self._router.candidates(model) if id(upstream) in joined]

    def learn_lock(self, upstream: Upstream, answer: bytes) -> None:
        """Remember the X25519 key a node's lock answer gave out."""
        try:
            lock = _lock_decoder.decode(split_signed_json(answer)[0])
        except msgspec.DecodeError:
            return
        for node in self.nodes.values():
            if node.upstream is upstream:
                node.dh_public_key = lock.public_key

    def confidential_target(self, envelope: dict[str, Any]) -> Upstream:
        """The node whose X25519 key the envelope is sealed to."""
        key = envelope.get("node_dh_public_key")
        if not isinstance(key, str):
            raise BadRequestError("`node_dh_public_key` is required.", param="node_dh_public_key")
        for node in self.nodes.values():
            if node.dh_public_key == key:
                return node.upstream
        raise BadRequestError(
            "No node of this gateway holds `node_dh_public_key`: lock again (POST /v1/nodes/lock) and seal "
            "the request to the key it gives.",
            param="node_dh_public_key",
            code="unknown_node_key",
        )

    # --- trust list and heartbeats --------------------------------------------------------------------------

    def _stamp(self) -> tuple[int, int] | None:
        if self._path is None:
            return None
        try:
            stat = os.stat(self._path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def refresh_trust(self) -> None:
        """Read the trust list again if the config file changed; a file that no longer parses changes nothing."""
        stamp = self._stamp()
        if stamp is None or stamp == self._file_stamp:
            return
        self._file_stamp = stamp
        assert self._path is not None
        try:
            nodes = load_config(self._path).nodes
        except ConfigError as exc:
            logger.warning("the trust list stays as it was: %s", exc)
            return
        self._trusted = _decoded(nodes.trusted if nodes is not None else ())
        logger.info("trust list read again from %s: %d node keys", self._path, len(self._trusted))

    def sweep(self) -> None:
        """Drop the nodes that stopped heartbeating, or whose key is no longer trusted."""
        assert self._config is not None
        self.refresh_trust()
        deadline = time.monotonic() - self._config.heartbeat_timeout
        for node in list(self.nodes.values()):
            if node.public_key not in self._trusted:
                reason = "its key is no longer trusted"
            elif node.last_seen < deadline:
                reason = f"no heartbeat for {self._config.heartbeat_timeout:g} s"
            else:
                continue
            logger.warning("node %s left the pool: %s", node.upstream.name, reason)
            self._drop(node)

    async def _sweep_loop(self) -> None:
        assert self._config is not None
        period = min(1.0, self._config.heartbeat_timeout / 4)
        while True:
            await asyncio.sleep(period)
            self.sweep()


def _decoded(keys: tuple[str, ...]) -> frozenset[bytes]:
    return frozenset(decode_public_key(key) for key in keys)
