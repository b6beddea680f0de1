"""The gateway's ASGI app: a thin wiring of its parts.

Each part does one thing: :class:`~._health.HealthChecker` (upstream health), :class:`~._admission.Admission`
(keys, request checks, limits), :class:`~._forwarding.Forwarder` (failover and pass-through) and
:class:`~._ledger_writer.LedgerWriter` (metrics and ledger rows). :class:`Gateway` owns their lifecycle
and the endpoints; every handler runs behind the edge's one error choke point.
"""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .._errors import AuthenticationError
from ..edge import (
    BEARER,
    ErrorBoundary,
    Handler,
    JSONResponse,
    exception_handlers,
    find_credential,
    model_list_response,
    respond,
)
from ..types import Model
from ._admission import Admission
from ._config import GatewayConfig
from ._forwarding import Forwarder
from ._health import HealthChecker
from ._ledger import Store, open_store
from ._ledger_writer import LedgerWriter
from ._metrics import GatewayMetrics
from ._routing import Router
from ._upstream import UpstreamClient

__all__ = ["Gateway", "GatewayApp", "create_gateway_app"]


class Gateway:
    """Everything the app holds; tests and the CLI reach the store and router through it."""

    def __init__(self, config: GatewayConfig, store: Store | None = None) -> None:
        self.config = config
        self.settings = config.settings
        self.router = Router(config.upstreams, ejection_cooldown=config.settings.ejection_cooldown)
        self.metrics = GatewayMetrics()
        self._store = store
        self._owns_store = store is None
        self.health_checks = HealthChecker(self.router, self.metrics, self.settings)
        self.ledger = LedgerWriter(
            self.metrics,
            progress_interval=self.settings.ledger_progress_interval,
            retention=self.settings.usage_retention_days * 86400.0,
        )
        self._upstream_client = UpstreamClient(
            connect_timeout=self.settings.connect_timeout, read_timeout=self.settings.read_timeout
        )
        self.forwarder = Forwarder(self.router, self.metrics, self.ledger, self._upstream_client)
        self._admission: Admission | None = None

    @property
    def store(self) -> Store:
        assert self._store is not None, "the gateway has not started"
        return self._store

    @property
    def admission(self) -> Admission:
        assert self._admission is not None, "the gateway has not started"
        return self._admission

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._store is None:
            self._store = await open_store(self.config.database, self.settings.limit_window)
        self._admission = Admission(self._store, self.settings, self.metrics, self.router.serves)
        await self.health_checks.start()
        await self.ledger.start(self._store)

    async def stop(self) -> None:
        await self.health_checks.stop()
        # Every finished request's row is written before the database closes.
        await self.ledger.stop()
        await self._upstream_client.aclose()
        if self._store is not None and self._owns_store:
            await self._store.close()

    async def flush_ledger(self) -> None:
        """Waits until every finished request's row is in the database."""
        await self.ledger.flush()

    async def check_health(self) -> None:
        await self.health_checks.check_all()

    # --- endpoints ----------------------------------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        arrived = time.perf_counter()
        admitted = await self.admission.admit(request, time.time())
        return await self.forwarder.forward(admitted, "/chat/completions", arrived)

    async def completions(self, request: Request) -> Response:
        arrived = time.perf_counter()
        admitted = await self.admission.admit(request, time.time())
        return await self.forwarder.forward(admitted, "/completions", arrived)

    async def models(self, request: Request) -> Response:
        key = await self.admission.listing_key(request)
        # Which upstreams serve a model is the gateway's business, not the client's.
        return model_list_response(
            Model(id=model, owned_by="chunkwise-gateway")
            for model in self.router.models()
            if not key.models or model in key.models
        )

    async def health(self, request: Request) -> Response:
        report, ok = self.health_checks.report()
        return JSONResponse(report, status_code=200 if ok else 503)

    async def metrics_endpoint(self, request: Request) -> Response:
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        token = self.settings.metrics_token
        if token:
            credential = find_credential(request.scope["headers"])
            given = credential.text if credential is not None and credential.scheme == BEARER else ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise AuthenticationError(
                    "GET /metrics needs the metrics token: Authorization: Bearer TOKEN.", code="invalid_api_key"
                )

        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
        ]


class GatewayApp:
    """The ASGI app: the two proxy routes are called directly, everything else goes through Starlette.

    Starlette wraps ``send`` in two middleware closures per message; on a stream of thousands of chunks
    that is measurable, so the streaming routes skip them. Both ways run behind the edge's error choke
    point: :func:`~chunkwise.edge.respond` for the direct routes, :class:`~chunkwise.edge.ErrorBoundary`
    in Starlette.
    """

    def __init__(self, gateway: Gateway, starlette: Starlette) -> None:
        self.gateway = gateway
        self.starlette = starlette
        self.state = starlette.state
        self._proxied: dict[str, Handler] = {
            "/v1/chat/completions": gateway.chat_completions,
            "/v1/completions": gateway.completions,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self._proxied.get(scope["path"])
            if handler is not None:
                await respond(handler, scope, receive, send)
                return
        await self.starlette(scope, receive, send)


def create_gateway_app(config: GatewayConfig, store: Store | None = None) -> GatewayApp:
    """The gateway as an ASGI app; it opens its database and starts its health checks in the lifespan."""
    gateway = Gateway(config, store)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    starlette = Starlette(
        routes=gateway.routes(),
        middleware=[Middleware(ErrorBoundary)],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    starlette.state.gateway = gateway
    return GatewayApp(gateway, starlette)
