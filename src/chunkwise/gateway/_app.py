"""The gateway's ASGI app: authentication and limits, routing with failover, pass-through, ledger, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..types import ErrorDetail, ErrorResponse
from ._config import GatewayConfig
from ._ledger import Admitted, Store, UsageRow, open_store
from ._limits import Refusal, explain_refusal
from ._metrics import GatewayMetrics
from ._passthrough import BodyProbe
from ._proxy import Attempt, Failure, Hooks, ProxyStream, StreamOutcome, send_with_failover
from ._routing import Router, Upstream
from ._upstream import UpstreamClient, UpstreamError

__all__ = ["Gateway", "GatewayApp", "create_gateway_app"]

logger = logging.getLogger("chunkwise.gateway")

_encoder = msgspec.json.Encoder()
_body_probe = msgspec.json.Decoder(BodyProbe)
_LEDGER_BATCH = 500
_LEDGER_DELAY = 0.05


class _ModelList(msgspec.Struct):
    data: list[_ModelEntry]
    object: str = "list"


class _ModelEntry(msgspec.Struct):
    id: str
    owned_by: str
    object: str = "model"
    created: int = 0


def _error(status: int, message: str, *, code: str, error_type: str, headers: dict[str, str] | None = None) -> Response:
    body = _encoder.encode(ErrorResponse(error=ErrorDetail(message=message, type=error_type, code=code)))
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _bearer(header: str | None) -> str | None:
    if header is None or not header.startswith("Bearer "):
        return None
    return header[7:].strip() or None


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it passes ``limit`` bytes (so an oversized body is never held whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    pieces: list[bytes] = []
    size = 0
    async for piece in request.stream():
        size += len(piece)
        if size > limit:
            return None
        pieces.append(piece)
    return b"".join(pieces)


def _reserve(payload: dict[str, Any]) -> int:
    """Tokens to hold against the key's budget while the request runs: its own ``max_tokens``, if any."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


class Gateway:
    """Everything the app holds; tests and the CLI reach the store and router through it."""

    def __init__(self, config: GatewayConfig, store: Store | None = None) -> None:
        self.config = config
        self.settings = config.settings
        self.router = Router(config.upstreams, ejection_cooldown=config.settings.ejection_cooldown)
        self.metrics = GatewayMetrics()
        self._store = store
        self._owns_store = store is None
        self._client: httpx.AsyncClient | None = None
        self._upstream_client: UpstreamClient | None = None
        self._ledger: asyncio.Queue[UsageRow] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        for upstream in self.router.upstreams:
            self.metrics.healthy.labels(upstream.name).set(1)
            self.metrics.outstanding.labels(upstream.name).set(0)
        self._hooks = Hooks(on_start=self._on_start, on_release=self._on_release, on_error=self._on_error)

    @property
    def store(self) -> Store:
        assert self._store is not None, "the gateway has not started"
        return self._store

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None, "the gateway has not started"
        return self._client

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._store is None:
            self._store = await open_store(self.config.database, self.settings.limit_window)
        timeout = httpx.Timeout(self.settings.read_timeout, connect=self.settings.connect_timeout, pool=None)
        # Proxied requests take the lean client of ._upstream; health checks take httpx. Upstreams are
        # addressed directly: HTTP(S)_PROXY from the environment must not reroute them.
        self._upstream_client = UpstreamClient(
            connect_timeout=self.settings.connect_timeout, read_timeout=self.settings.read_timeout
        )
        self._client = httpx.AsyncClient(timeout=timeout, trust_env=False)
        # One health round first, so that upstreams configured without `models` are known before traffic.
        if self.settings.health_check_interval > 0:
            await self.check_health()
        else:
            await asyncio.gather(*(self._check(up) for up in self.router.upstreams if not up.config.models))
        self._tasks = [asyncio.create_task(self._health_loop()), asyncio.create_task(self._ledger_writer())]

    async def stop(self) -> None:
        health_loop, ledger_writer = self._tasks or (None, None)
        if health_loop is not None:
            health_loop.cancel()
        # Every finished request's row is written before the database closes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ledger.join(), timeout=10)
        if ledger_writer is not None:
            ledger_writer.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        if self._upstream_client is not None:
            await self._upstream_client.aclose()
        if self._store is not None and self._owns_store:
            await self._store.close()

    async def flush_ledger(self) -> None:
        """Waits until every finished request's row is in the database."""
        await self._ledger.join()

    # --- health -------------------------------------------------------------------------------------------

    async def check_health(self) -> None:
        await asyncio.gather(*(self._check(upstream) for upstream in self.router.upstreams))

    async def _check(self, upstream: Upstream) -> None:
        headers = {"authorization": f"Bearer {upstream.api_key}"} if upstream.api_key else {}
        timeout = min(5.0, max(0.5, self.settings.health_check_interval))
        try:
            response = await self.client.get(f"{upstream.url}/models", headers=headers, timeout=timeout)
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
        self.metrics.healthy.labels(upstream.name).set(1 if healthy else 0)

    async def _health_loop(self) -> None:
        if self.settings.health_check_interval <= 0:
            return
        while True:
            await asyncio.sleep(self.settings.health_check_interval)
            await self.check_health()

    def _on_start(self, upstream: Upstream) -> None:
        upstream.outstanding += 1
        self.metrics.outstanding.labels(upstream.name).inc()

    def _on_release(self, upstream: Upstream) -> None:
        upstream.outstanding -= 1
        self.metrics.outstanding.labels(upstream.name).dec()

    def _on_error(self, upstream: Upstream, model: str, kind: str) -> None:
        self.metrics.errors.labels(upstream.name, model, kind).inc()
        if kind != "status_429":
            self.router.eject(upstream)
            self.metrics.ejections.labels(upstream.name).inc()
            logger.warning("upstream %s ejected for %.0f s (%s)", upstream.name, self.router.ejection_cooldown, kind)

    # --- ledger ---------------------------------------------------------------------------------------------

    async def _ledger_writer(self) -> None:
        while True:
            batch = [await self._ledger.get()]
            # Rows that finish close together share one transaction: under load that is one commit for many
            # requests. Their reservations keep holding their tokens until then, so no limit is overrun.
            await asyncio.sleep(_LEDGER_DELAY)
            while len(batch) < _LEDGER_BATCH and not self._ledger.empty():
                batch.append(self._ledger.get_nowait())
            try:
                await self.store.record(batch)
            except Exception:
                logger.exception("could not write %d usage rows", len(batch))
            finally:
                for _ in batch:
                    self._ledger.task_done()

    def _record(
        self,
        admitted: Admitted,
        model: str,
        upstream: Upstream | None,
        *,
        started_at: float,
        arrived: float,
        status: int,
        outcome: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        ttft: float | None = None,
        cancelled: bool = False,
    ) -> None:
        upstream_name = upstream.name if upstream is not None else ""
        self.metrics.requests.labels(upstream_name, model, admitted.key_name, str(status)).inc()
        if prompt_tokens:
            self.metrics.tokens.labels(upstream_name, model, admitted.key_name, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self.metrics.tokens.labels(upstream_name, model, admitted.key_name, "completion").inc(completion_tokens)
        if ttft is not None:
            self.metrics.time_to_first_token.labels(upstream_name, model).observe(ttft)
        self._ledger.put_nowait(
            UsageRow(
                key_id=admitted.key_id,
                model=model,
                upstream=upstream.name if upstream is not None else None,
                started_at=started_at,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                ttft_ms=None if ttft is None else ttft * 1000.0,
                duration_ms=(time.perf_counter() - arrived) * 1000.0,
                status=status,
                outcome=outcome,
                cancelled=cancelled,
                reserve=admitted.reserve,
                admit_window=admitted.window,
            )
        )

    # --- endpoints ----------------------------------------------------------------------------------------

    async def _refusal(self, secret: str, model: str) -> Refusal:
        key = await self.store.find_key(secret)
        refusal = explain_refusal(key, model, time.time(), self.settings.limit_window)
        if refusal is None:
            # A limit that no longer holds (the window turned) or a race with another request: say "retry".
            refusal = Refusal(429, "rate_limit_exceeded", "Rate limit reached; retry shortly.", "requests", 1)
        return refusal

    def _refusal_response(self, refusal: Refusal) -> Response:
        self.metrics.refusals.labels(refusal.code).inc()
        headers = {"retry-after": str(refusal.retry_after)} if refusal.retry_after is not None else None
        return _error(
            refusal.status, refusal.message, code=refusal.code, error_type=refusal.error_type, headers=headers
        )

    async def models(self, request: Request) -> Response:
        secret = _bearer(request.headers.get("authorization"))
        key = None if secret is None else await self.store.find_key(secret)
        if key is None or key.revoked_at is not None:
            return self._refusal_response(
                Refusal(401, "invalid_api_key", "Incorrect or revoked API key.", "invalid_request_error")
            )
        # Which upstreams serve a model is the gateway's business, not the client's.
        entries = [
            _ModelEntry(id=model, owned_by="chunkwise-gateway")
            for model in self.router.models()
            if not key.models or model in key.models
        ]
        return Response(_encoder.encode(_ModelList(data=entries)), media_type="application/json")

    async def health(self, request: Request) -> Response:
        now = time.monotonic()
        upstreams = {
            upstream.name: {
                "healthy": upstream.healthy,
                "available": upstream.available(now),
                "outstanding": upstream.outstanding,
                "models": sorted(upstream.models),
            }
            for upstream in self.router.upstreams
        }
        ok = any(upstream.available(now) for upstream in self.router.upstreams)
        return Response(
            _encoder.encode({"status": "ok" if ok else "degraded", "upstreams": upstreams}),
            status_code=200 if ok else 503,
            media_type="application/json",
        )

    async def metrics_endpoint(self, request: Request) -> Response:
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def chat_completions(self, request: Request) -> Response:
        return await self._proxy(request, "/chat/completions")

    async def completions(self, request: Request) -> Response:
        return await self._proxy(request, "/completions")

    async def _proxy(self, request: Request, path: str) -> Response:
        arrived = time.perf_counter()
        started_at = time.time()
        secret = _bearer(request.headers.get("authorization"))
        if secret is None:
            return self._refusal_response(
                Refusal(
                    401, "invalid_api_key", "Missing API key: send Authorization: Bearer KEY.", "invalid_request_error"
                )
            )
        body = await _read_body(request, self.settings.max_body_size)
        if body is None:
            return _error(
                413, "The request body is too large.", code="request_too_large", error_type="invalid_request_error"
            )
        try:
            payload = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            return _error(
                400, f"The body is not valid JSON: {exc}", code="invalid_json", error_type="invalid_request_error"
            )
        model = payload.get("model") if isinstance(payload, dict) else None
        if not isinstance(model, str) or not model:
            return _error(400, "`model` is required.", code="missing_model", error_type="invalid_request_error")
        admitted = await self.store.admit(secret, model, _reserve(payload), started_at)
        if admitted is None:
            return self._refusal_response(await self._refusal(secret, model))
        record = self._record
        if not self.router.serves(model):
            record(admitted, model, None, started_at=started_at, arrived=arrived, status=404, outcome="no_upstream")
            return _error(
                404,
                f"The model {model!r} does not exist on this gateway.",
                code="model_not_found",
                error_type="invalid_request_error",
            )
        stream = payload.get("stream") is True
        strip_usage = False
        if stream:
            options = payload.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                # Ask for the usage chunk to bill by; the client, which did not ask, will not see it.
                payload["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
                body = _encoder.encode(payload)
                strip_usage = True
        assert self._upstream_client is not None, "the gateway has not started"
        attempt = await send_with_failover(
            self._upstream_client,
            self.router.candidates(model),
            path,
            body,
            model=model,
            stream=stream,
            hooks=self._hooks,
        )
        if isinstance(attempt, Failure):
            record(
                admitted,
                model,
                attempt.upstream,
                started_at=started_at,
                arrived=arrived,
                status=attempt.status,
                outcome="upstream_error",
            )
            if attempt.body is not None:
                headers = {"retry-after": attempt.retry_after} if attempt.retry_after else None
                return Response(
                    attempt.body, status_code=attempt.status, headers=headers, media_type="application/json"
                )
            return _error(attempt.status, attempt.message, code="upstream_unavailable", error_type="upstream_error")
        if attempt.rest is not None:
            return ProxyStream(
                attempt,
                strip_usage=strip_usage,
                arrived=arrived,
                on_end=lambda outcome: self._stream_ended(admitted, model, attempt, outcome, started_at, arrived),
            )
        return await self._whole_answer(admitted, model, attempt, started_at, arrived)

    async def _whole_answer(
        self, admitted: Admitted, model: str, attempt: Attempt, started_at: float, arrived: float
    ) -> Response:
        upstream = attempt.upstream
        response = attempt.response
        try:
            content = await response.aread()
        except UpstreamError as exc:
            self._record(
                admitted, model, upstream, started_at=started_at, arrived=arrived, status=502, outcome="upstream_error"
            )
            return _error(502, f"The upstream failed: {exc}", code="upstream_failed", error_type="upstream_error")
        finally:
            await response.aclose()
            self._on_release(upstream)
        prompt = completion = 0
        if response.status_code == 200:
            try:
                usage = _body_probe.decode(content).usage
            except msgspec.DecodeError:
                usage = None
            if usage is not None:
                prompt, completion = usage.prompt_tokens, usage.completion_tokens
        self._record(
            admitted,
            model,
            upstream,
            started_at=started_at,
            arrived=arrived,
            status=response.status_code,
            outcome="ok" if response.status_code == 200 else "upstream_error",
            prompt_tokens=prompt,
            completion_tokens=completion,
            ttft=time.perf_counter() - arrived,
        )
        media_type = response.headers.get("content-type", "application/json")
        return Response(content, status_code=response.status_code, media_type=media_type)

    def _stream_ended(
        self,
        admitted: Admitted,
        model: str,
        attempt: Attempt,
        outcome: StreamOutcome,
        started_at: float,
        arrived: float,
    ) -> None:
        upstream = attempt.upstream
        self._on_release(upstream)
        inspector = outcome.inspector
        if inspector.usage is not None:
            prompt, completion = inspector.usage.prompt_tokens, inspector.usage.completion_tokens
        else:
            # Cut short or cancelled: bill what was delivered (one token per chunk with output).
            prompt, completion = 0, inspector.delivered_tokens
        if outcome.cancelled:
            result = "cancelled"
            self.metrics.cancelled.labels(upstream.name, model, admitted.key_name).inc()
        elif outcome.failure is not None:
            result = "cut_short"
            self.metrics.errors.labels(upstream.name, model, "mid_stream").inc()
        elif inspector.error is not None:
            result = "upstream_error"
        else:
            result = "ok"
        self._record(
            admitted,
            model,
            upstream,
            started_at=started_at,
            arrived=arrived,
            status=200,
            outcome=result,
            prompt_tokens=prompt,
            completion_tokens=completion,
            ttft=outcome.ttft,
            cancelled=outcome.cancelled,
        )

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
    that is measurable, so the streaming routes skip them.
    """

    def __init__(self, gateway: Gateway, starlette: Starlette) -> None:
        self.gateway = gateway
        self.starlette = starlette
        self.state = starlette.state
        self._proxied = {"/v1/chat/completions": gateway.chat_completions, "/v1/completions": gateway.completions}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self._proxied.get(scope["path"])
            if handler is not None:
                response = await handler(Request(scope, receive))
                await response(scope, receive, send)
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

    starlette = Starlette(routes=gateway.routes(), lifespan=lifespan)
    starlette.state.gateway = gateway
    return GatewayApp(gateway, starlette)
