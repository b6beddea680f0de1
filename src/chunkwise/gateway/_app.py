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
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .._errors import APIStatusError, AuthenticationError, NotFoundError
from ..confidential import NodesCreateLockRequest
from ..dialects import MessagesRequest, MessageTokensCount, ResponsesRequest, messages_request_to_chat
from ..edge import (
    BEARER,
    MESSAGES_ERRORS,
    OPENAI_ERRORS,
    ErrorBoundary,
    ErrorShape,
    Handler,
    JSONResponse,
    MessagesAnswer,
    decode_json,
    exception_handlers,
    find_credential,
    model_list_response,
    open_response_store,
    read_body,
    respond,
    responses_answer,
    stored_response_routes,
)
from ..types import ChatCompletion, ChatCompletionRequest, Model
from ._admission import Admission, AdmittedRequest
from ._config import GatewayConfig
from ._forwarding import Forwarder
from ._health import HealthChecker
from ._ledger import Store, open_store
from ._ledger_writer import LedgerWriter
from ._metrics import GatewayMetrics
from ._nodes import NodeRegistry
from ._routing import Router
from ._upstream import UpstreamClient

__all__ = ["Gateway", "GatewayApp", "create_gateway_app"]

T = TypeVar("T")

_encoder = msgspec.json.Encoder()

#: The routes whose requests go to an upstream as they came (:meth:`Gateway.pass_through`).
_PASSED_THROUGH = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")

#: The confidential routes a joined node answers, under ``/v1``.
CONFIDENTIAL_PATHS = ("/confidential/chat/completions", "/confidential/completions", "/confidential/embeddings")


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
        self.nodes = NodeRegistry(config.nodes, config.path, self.router, self.health_checks)
        self._admission: Admission | None = None
        self.responses = open_response_store(
            self.settings.response_store or None, max(self.settings.response_store_size, 1)
        )

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
        await self.nodes.start()

    async def stop(self) -> None:
        await self.nodes.stop()
        await self.health_checks.stop()
        # Every finished request's row is written before the database closes.
        await self.ledger.stop()
        await self._upstream_client.aclose()
        if self._store is not None and self._owns_store:
            await self._store.close()
        self.responses.close()

    async def flush_ledger(self) -> None:
        """Waits until every finished request's row is in the database."""
        await self.ledger.flush()

    async def check_health(self) -> None:
        await self.health_checks.check_all()

    # --- endpoints ----------------------------------------------------------------------------------------

    async def pass_through(self, request: Request) -> Response:
        """Chat, legacy completions and embeddings: sent on as they came, to the upstream's path (less ``/v1``)."""
        arrived = time.perf_counter()
        admitted = await self.admission.admit(request, time.time())
        return await self.forwarder.forward(admitted, request.scope["path"].removeprefix("/v1"), arrived)

    async def register_node(self, request: Request) -> Response:
        """``POST /v1/nodes``: a node's signed registration (and heartbeat); the signature is the credential."""
        body = await read_body(request, self.settings.max_body_size)
        return JSONResponse(await self.nodes.register(body))

    async def lock_node(self, request: Request) -> Response:
        """``POST /v1/nodes/lock``: a joined node that serves the model answers with its X25519 key and id."""
        key = await self.admission.listing_key(request)
        body = await read_body(request, self.settings.max_body_size)
        model = decode_json(body, NodesCreateLockRequest).model
        candidates = self.nodes.lock_candidates(model) if not key.models or model in key.models else []
        if not candidates:
            shown = model if len(model) <= 100 else model[:100] + "..."
            raise NotFoundError(f"No node of this gateway serves the model {shown!r}.", code="model_not_found")
        upstream, answer = await self.forwarder.relay(candidates, "/nodes/lock", body, model)
        if upstream is not None and answer.status_code == 200:
            self.nodes.learn_lock(upstream, bytes(answer.body))
        return answer

    def confidential(self, path: str) -> Handler:
        """A confidential route: the envelope goes untouched to the node whose key it is sealed to."""

        async def handler(request: Request) -> Response:
            arrived = time.perf_counter()
            admitted = await self.admission.admit(request, time.time(), model_field="model_name")
            node = self._translated(admitted, arrived, lambda: self.nodes.confidential_target(admitted.payload))
            return await self.forwarder.forward(admitted, path, arrived, only=node)

        return handler

    async def create_response(self, request: Request) -> Response:
        """The Responses API, translated to chat for the upstream."""
        arrived = time.perf_counter()
        admitted = await self.admission.admit(request, time.time())
        body = self._translated(admitted, arrived, lambda: decode_json(admitted.body, ResponsesRequest))
        chat, answer = self._translated(
            admitted,
            arrived,
            lambda: responses_answer(
                body,
                self.responses,
                response_id=f"resp_{uuid.uuid4().hex}",
                created_at=int(time.time()),
                model=body.model,
                # A key reads and continues only the responses it made.
                owner=admitted.admitted.key_id,
            ),
        )
        return await self.forwarder.translate(admitted, chat, answer, arrived)

    async def create_message(self, request: Request) -> Response:
        """Anthropic Messages, translated to chat for the upstream."""
        arrived = time.perf_counter()
        admitted = await self.admission.admit(request, time.time())
        chat = self._translated(
            admitted, arrived, lambda: messages_request_to_chat(decode_json(admitted.body, MessagesRequest))
        )
        answer = MessagesAnswer(message_id=f"msg_{uuid.uuid4().hex}", model=admitted.model, input_tokens=0)
        return await self.forwarder.translate(admitted, chat, answer, arrived)

    async def count_message_tokens(self, request: Request) -> Response:
        """``count_tokens`` from any chat upstream: a one-token chat request, of which only the usage is read."""
        arrived = time.perf_counter()
        admitted = await self.admission.admit(request, time.time())
        body = self._translated(admitted, arrived, lambda: decode_json(admitted.body, MessagesRequest))
        chat = self._translated(admitted, arrived, lambda: _counting(body))
        answer = MessagesAnswer(message_id="", model=admitted.model, input_tokens=0)
        return await self.forwarder.translate(admitted, chat, answer, arrived, render=_token_count)

    def _translated(self, admitted: AdmittedRequest, arrived: float, translate: Callable[[], T]) -> T:
        """``translate()``; a request it refuses is settled in the ledger (its reservation freed) as it fails."""
        try:
            return translate()
        except APIStatusError as exc:
            self.forwarder.settle_unsent(admitted, arrived, exc.status, "bad_request")
            raise

    async def _key_id(self, request: Request) -> str:
        """The caller's key, which reads and deletes only the responses it made."""
        return (await self.admission.listing_key(request)).id

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
        token = self.settings.metrics_token
        if token:
            credential = find_credential(request.scope["headers"])
            given = credential.text if credential is not None and credential.scheme == BEARER else ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise AuthenticationError(
                    "GET /metrics needs the metrics token: Authorization: Bearer TOKEN.", code="invalid_api_key"
                )

        return self.metrics.response()

    def routes(self) -> list[Route]:
        return [
            *(Route(path, self.pass_through, methods=["POST"]) for path in _PASSED_THROUGH),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/nodes", self.register_node, methods=["POST"]),
            Route("/v1/nodes/lock", self.lock_node, methods=["POST"]),
            *stored_response_routes(self.responses, self._key_id),
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
        ]


class GatewayApp:
    """The ASGI app: the proxied routes are called directly, everything else goes through Starlette.

    Starlette wraps ``send`` in two middleware closures per message; on a stream of thousands of chunks
    that is measurable, so the streaming routes skip them. Both ways run behind the edge's error choke
    point: :func:`~chunkwise.edge.respond` for the direct routes, :class:`~chunkwise.edge.ErrorBoundary`
    in Starlette.
    """

    def __init__(self, gateway: Gateway, starlette: Starlette) -> None:
        self.gateway = gateway
        self.starlette = starlette
        self.state = starlette.state
        # Each proxied route with the error shape of its dialect.
        self._proxied: dict[str, tuple[Handler, ErrorShape]] = {
            **dict.fromkeys(_PASSED_THROUGH, (gateway.pass_through, OPENAI_ERRORS)),
            "/v1/responses": (gateway.create_response, OPENAI_ERRORS),
            "/v1/messages": (gateway.create_message, MESSAGES_ERRORS),
            "/v1/messages/count_tokens": (gateway.count_message_tokens, MESSAGES_ERRORS),
        }
        for path in CONFIDENTIAL_PATHS:
            self._proxied["/v1" + path] = (gateway.confidential(path), OPENAI_ERRORS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            proxied = self._proxied.get(scope["path"])
            if proxied is not None:
                await respond(proxied[0], scope, receive, send, proxied[1])
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


def _counting(request: MessagesRequest) -> ChatCompletionRequest:
    # One token is the least a chat upstream generates; only the prompt's count is read back.
    chat = messages_request_to_chat(request, count_only=True)
    return msgspec.structs.replace(chat, max_completion_tokens=1, stream=False, stream_options=None)


def _token_count(completion: ChatCompletion) -> bytes:
    tokens = completion.usage.prompt_tokens if completion.usage is not None else 0
    return _encoder.encode(MessageTokensCount(input_tokens=tokens))
