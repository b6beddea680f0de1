"""The app factory: wires the engine, scheduler, metrics and middleware into one Starlette app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from ..edge import exception_handlers, open_response_store
from ..engine import BatchingEngine, Embedder, Engine
from ._admission import Admission
from ._confidential import ConfidentialEndpoints
from ._embeddings import EmbeddingEndpoints
from ._generation import quiet_stalled_responses
from ._metrics import ServerMetrics
from ._middleware import REQUEST_ID_HEADER, BearerAuthMiddleware, CORSMiddleware, RequestContextMiddleware
from ._routes import Endpoints
from ._scheduler import Scheduler
from ._settings import ServerSettings
from ._signing import signing_key_route
from ._tokens import TokenEndpoints

__all__ = ["create_app"]


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    # uvicorn's logger is the process's, not the app's: filtered only while the app runs.
    with quiet_stalled_responses():
        try:
            yield
        finally:
            app.state.responses.close()


def create_app(
    engine: Engine,
    settings: ServerSettings | None = None,
    *,
    scheduler: Admission | None = None,
    embedder: Embedder | None = None,
) -> Starlette:
    """An ASGI app serving ``engine`` with the OpenAI chat-completions API.

    The caller owns ``engine`` (loads it before and closes it after). The app runs as many sequences at once
    as ``settings.max_running`` allows (by default what a batching engine decodes together, else one).
    Example::

        engine = LlamaCppEngine()
        settings = ServerSettings(queue_size=8)
        uvicorn.run(create_app(engine, settings), http=h11_protocol(header_timeout=settings.header_timeout))

    (``http=`` adds the header timeout and error-shaped 400s of :mod:`._protocol`; any ASGI server works.)

    ``scheduler`` replaces the app's own admission queue, for engines whose capacity lives elsewhere (Ray).
    ``embedder`` answers ``/v1/embeddings`` (the caller owns it too, like the engine); without one, those
    requests get a 404.
    """
    settings = settings or ServerSettings()
    metrics = ServerMetrics()
    if scheduler is None:
        capacity = settings.max_running
        if capacity is None:
            capacity = engine.max_running if isinstance(engine, BatchingEngine) else 1
        scheduler = Scheduler(settings.queue_size, retry_after=settings.retry_after, capacity=capacity)
    metrics.queue_depth.set_function(lambda: scheduler.queue_depth)
    metrics.watch_engine(engine)
    embeddings = EmbeddingEndpoints(embedder=embedder, settings=settings, metrics=metrics)
    extra_model = embeddings.model
    responses = open_response_store(settings.response_store, settings.response_store_size)
    endpoints = Endpoints(
        engine=engine,
        settings=settings,
        scheduler=scheduler,
        metrics=metrics,
        responses=responses,
        also_serves=[extra_model] if extra_model is not None and extra_model.id != engine.model_id else [],
    )
    confidential = ConfidentialEndpoints(
        model_ids=endpoints.model_ids,
        settings=settings,
        answers={
            "/v1/confidential/chat/completions": endpoints.confidential_chat,
            "/v1/confidential/completions": endpoints.confidential_completions,
            "/v1/confidential/embeddings": embeddings.confidential_embeddings,
        },
    )
    tokens = TokenEndpoints(engine=engine, settings=settings)
    routes = [
        *endpoints.routes(),
        *embeddings.routes(),
        *tokens.routes(),
        *confidential.routes(),
        signing_key_route(settings.signer),
    ]

    middleware = [
        Middleware(
            RequestContextMiddleware,
            metrics=metrics,
            routes=frozenset(route.path for route in routes if "{" not in route.path),
        ),
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            # Anthropic's SDKs send their key and version in headers of their own.
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-Request-Id",
                "X-Api-Key",
                "Anthropic-Version",
                "Anthropic-Beta",
                "Anthropic-Dangerous-Direct-Browser-Access",
            ],
            expose_headers=[REQUEST_ID_HEADER, "Retry-After"],
            max_age=600,
        ),
    ]
    if settings.api_key is not None:
        middleware.append(
            Middleware(
                BearerAuthMiddleware, api_key=settings.api_key, protected_prefix=("/v1/", "/tokenize", "/detokenize")
            )
        )

    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=exception_handlers(),
        lifespan=_lifespan,
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.scheduler = scheduler
    app.state.metrics = metrics
    app.state.responses = responses
    return app
