"""The proxy part: an admitted request goes upstream with failover, and its answer comes back and is recorded."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
from starlette.responses import Response

from .._errors import APIStatusError, NotFoundError
from ..edge import OPENAI_ERRORS, DialectAnswer, ErrorShape
from ..types import ChatCompletion, ChatCompletionRequest, CompletionUsage
from ._admission import AdmittedRequest
from ._ledger_writer import Billed, LedgerWriter
from ._metrics import GatewayMetrics
from ._passthrough import BodyProbe, StreamInspector
from ._proxy import Attempt, Failure, Hooks, ProxyStream, StreamOutcome, send_with_failover
from ._routing import Router, Upstream
from ._translation import TranslatedOutcome, TranslatedStream, render_whole, reshaped_error
from ._upstream import UpstreamClient, UpstreamError

__all__ = ["Forwarder"]

logger = logging.getLogger("chunkwise.gateway")

_encoder = msgspec.json.Encoder()
_body_probe = msgspec.json.Decoder(BodyProbe)


#: What a stream bills: ``(prompt, prompt estimated?, completion)``.
class Forwarder:
    """Sends admitted requests to the router's upstreams and passes their answers through."""

    def __init__(self, router: Router, metrics: GatewayMetrics, ledger: LedgerWriter, client: UpstreamClient) -> None:
        self._router = router
        self._metrics = metrics
        self._ledger = ledger
        self._client = client
        self._hooks = Hooks(on_start=self._on_start, on_release=self._on_release, on_error=self._on_error)
        for upstream in router.upstreams:
            metrics.outstanding.labels(upstream.name).set(0)

    def _on_start(self, upstream: Upstream) -> None:
        upstream.outstanding += 1
        self._metrics.child(self._metrics.outstanding, upstream.name).inc()

    def _on_release(self, upstream: Upstream) -> None:
        upstream.outstanding -= 1
        self._metrics.child(self._metrics.outstanding, upstream.name).dec()

    def _on_error(self, upstream: Upstream, model: str, kind: str) -> None:
        self._metrics.errors.labels(upstream.name, model, kind).inc()
        if kind != "status_429":
            self._router.eject(upstream)
            self._metrics.ejections.labels(upstream.name).inc()
            logger.warning("upstream %s ejected for %.0f s (%s)", upstream.name, self._router.ejection_cooldown, kind)

    async def forward(
        self, request: AdmittedRequest, path: str, arrived: float, *, only: Upstream | None = None
    ) -> Response:
        """The pass-through: the client's own body upstream, the upstream's bytes back unchanged.

        With ``only``, the request goes to that upstream alone, byte for byte as it came (a confidential
        envelope, which only the node that holds its key can open).
        """
        return await self._running(request, arrived, lambda: self._pass_through(request, path, arrived, only))

    async def relay(
        self, candidates: list[Upstream], path: str, body: bytes, model: str
    ) -> tuple[Upstream | None, Response]:
        """A request outside the ledger (a node lock) to the first of ``candidates`` that answers: who answered
        (``None`` when none did), and the answer."""
        attempt = await send_with_failover(
            self._client, candidates, path, body, model=model, stream=False, hooks=self._hooks
        )
        if isinstance(attempt, Failure):
            if attempt.body is None:
                raise _failed(attempt)
            headers = {"retry-after": attempt.retry_after} if attempt.retry_after else None
            return None, Response(attempt.body, attempt.status, headers=headers, media_type="application/json")
        try:
            content = await attempt.response.aread()
        except UpstreamError as exc:
            raise APIStatusError(
                f"The upstream failed: {exc}", status=502, type="upstream_error", code="upstream_failed"
            ) from None
        finally:
            await attempt.response.aclose()
            self._on_release(attempt.upstream)
        media_type = attempt.response.headers.get("content-type", "application/json")
        return attempt.upstream, Response(content, status_code=attempt.response.status_code, media_type=media_type)

    async def translate(
        self,
        request: AdmittedRequest,
        chat: ChatCompletionRequest,
        answer: DialectAnswer,
        arrived: float,
        render: Callable[[ChatCompletion], bytes] | None = None,
    ) -> Response:
        """A dialect's request as ``chat`` upstream, the upstream's chat answer back through ``answer``.

        ``render`` writes a whole answer instead of ``answer.body`` (``count_tokens`` reads only the usage).
        """
        return await self._running(request, arrived, lambda: self._translated(request, chat, answer, arrived, render))

    def settle_unsent(self, request: AdmittedRequest, arrived: float, status: int, outcome: str) -> None:
        """The ledger row of a request that never went upstream, which frees its reservation."""
        self._ledger.record(
            request,
            None,
            arrived=arrived,
            status=status,
            outcome=outcome,
        )

    async def _running(
        self, request: AdmittedRequest, arrived: float, work: Callable[[], Awaitable[Response]]
    ) -> Response:
        """``work()`` for a request of a model some upstream serves, recorded as running until it is over."""
        model = request.model
        if not self._router.serves(model):
            self.settle_unsent(request, arrived, 404, "no_upstream")
            shown = model if len(model) <= 100 else model[:100] + "..."
            raise NotFoundError(f"The model {shown!r} does not exist on this gateway.", code="model_not_found")
        admitted = request.admitted
        self._ledger.running(admitted)
        try:
            return await work()
        except BaseException:
            # Whatever went wrong, the request is over: its reservation must not outlive it.
            if self._ledger.is_running(admitted):
                self.settle_unsent(request, arrived, 500, "gateway_error")
            raise

    async def _pass_through(
        self, request: AdmittedRequest, path: str, arrived: float, only: Upstream | None
    ) -> Response:
        admitted, payload, body = request.admitted, request.payload, request.body
        stream = payload.get("stream") is True
        strip_usage = False
        if stream and only is None:
            options = payload.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                # Ask for the usage chunk to bill by; the client, which did not ask, will not see it.
                payload["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
                body = _encoder.encode(payload)
                strip_usage = True
        attempt = await self._attempt(request, path, body, stream, arrived, OPENAI_ERRORS, only)
        if not isinstance(attempt, Attempt):
            return attempt
        if attempt.rest is not None:
            proxied = ProxyStream(
                attempt,
                strip_usage=strip_usage,
                arrived=arrived,
                on_end=lambda outcome: self._stream_ended(request, attempt, outcome, arrived),
            )
            self._ledger.running(admitted, lambda: _billable(admitted.prompt_estimate, proxied.inspector))
            return proxied
        return await self._whole_answer(request, attempt, arrived)

    async def _translated(
        self,
        request: AdmittedRequest,
        chat: ChatCompletionRequest,
        answer: DialectAnswer,
        arrived: float,
        render: Callable[[ChatCompletion], bytes] | None,
    ) -> Response:
        admitted = request.admitted
        stream = chat.stream is True
        body = _encoder.encode(chat)
        attempt = await self._attempt(request, "/chat/completions", body, stream, arrived, answer.errors)
        if not isinstance(attempt, Attempt):
            return attempt
        if attempt.rest is not None:
            translated = TranslatedStream(
                attempt,
                answer,
                arrived=arrived,
                on_end=lambda outcome: self._translated_stream_ended(request, attempt, outcome, arrived),
            )
            self._ledger.running(
                admitted,
                lambda: _billed(admitted.prompt_estimate, translated.usage, translated.delivered_tokens),
            )
            return translated
        return await self._whole_answer(request, attempt, arrived, answer.errors, render or answer.body)

    async def _attempt(
        self,
        request: AdmittedRequest,
        path: str,
        body: bytes,
        stream: bool,
        arrived: float,
        errors: ErrorShape,
        only: Upstream | None = None,
    ) -> Attempt | Response:
        """The upstream that answered (with failover), or the error answer when none did."""
        model = request.model
        candidates = self._router.candidates(model) if only is None else [only]
        attempt = await send_with_failover(
            self._client, candidates, path, body, model=model, stream=stream, hooks=self._hooks
        )
        if not isinstance(attempt, Failure):
            return attempt
        self._ledger.record(
            request,
            attempt.upstream,
            arrived=arrived,
            status=attempt.status,
            outcome="upstream_error",
        )
        if attempt.body is None:
            raise _failed(attempt)
        headers = {"retry-after": attempt.retry_after} if attempt.retry_after else None
        content = attempt.body if errors is OPENAI_ERRORS else reshaped_error(attempt.status, attempt.body, errors)
        return Response(content, status_code=attempt.status, headers=headers, media_type="application/json")

    async def _whole_answer(
        self,
        request: AdmittedRequest,
        attempt: Attempt,
        arrived: float,
        errors: ErrorShape = OPENAI_ERRORS,
        render: Callable[[ChatCompletion], bytes] | None = None,
    ) -> Response:
        """The upstream's whole answer: passed on as it is, or with ``render`` translated from chat."""
        upstream = attempt.upstream
        response = attempt.response
        try:
            content = await response.aread()
        except UpstreamError as exc:
            self._ledger.record(request, upstream, arrived=arrived, status=502, outcome="upstream_error")
            raise APIStatusError(
                f"The upstream failed: {exc}", status=502, type="upstream_error", code="upstream_failed"
            ) from None
        finally:
            await response.aclose()
            self._on_release(upstream)
        billed = Billed()
        if response.status_code == 200:
            try:
                usage = _body_probe.decode(content).usage
            except msgspec.DecodeError:
                usage = None
            if usage is not None:
                billed = Billed(usage.prompt_tokens, False, usage.completion_tokens)
        self._ledger.record(
            request,
            upstream,
            arrived=arrived,
            status=response.status_code,
            outcome="ok" if response.status_code == 200 else "upstream_error",
            billed=billed,
            ttft=time.perf_counter() - arrived,
        )
        if render is not None:
            status, content = render_whole(response.status_code, content, render, errors)
            return Response(content, status_code=status, media_type="application/json")
        media_type = response.headers.get("content-type", "application/json")
        return Response(content, status_code=response.status_code, media_type=media_type)

    def _stream_ended(self, request: AdmittedRequest, attempt: Attempt, outcome: StreamOutcome, arrived: float) -> None:
        billed = _billable(request.admitted.prompt_estimate, outcome.inspector)
        error = outcome.inspector.error
        self._settle_stream(request, attempt, arrived, billed, outcome.ttft, outcome.cancelled, outcome.failure, error)

    def _translated_stream_ended(
        self, request: AdmittedRequest, attempt: Attempt, outcome: TranslatedOutcome, arrived: float
    ) -> None:
        billed = _billed(request.admitted.prompt_estimate, outcome.usage, outcome.delivered_tokens)
        error = outcome.upstream_error
        self._settle_stream(request, attempt, arrived, billed, outcome.ttft, outcome.cancelled, outcome.failure, error)

    def _settle_stream(
        self,
        request: AdmittedRequest,
        attempt: Attempt,
        arrived: float,
        billed: Billed,
        ttft: float | None,
        cancelled: bool,
        failure: str | None,
        upstream_error: object | None,
    ) -> None:
        """A finished stream's ledger row and metrics, whichever dialect it was answered in."""
        admitted, model = request.admitted, request.label
        upstream = attempt.upstream
        self._on_release(upstream)
        if cancelled:
            result = "cancelled"
            self._metrics.cancelled.labels(upstream.name, model, admitted.key_name).inc()
        elif failure is not None:
            result = "cut_short"
            self._metrics.errors.labels(upstream.name, model, "mid_stream").inc()
        elif upstream_error is not None:
            result = "upstream_error"
        else:
            result = "ok"
        self._ledger.record(
            request,
            upstream,
            arrived=arrived,
            status=200,
            outcome=result,
            billed=billed,
            ttft=ttft,
            cancelled=cancelled,
        )


def _failed(failure: Failure) -> APIStatusError:
    return APIStatusError(failure.message, status=failure.status, type="upstream_error", code="upstream_unavailable")


def _billable(prompt_estimate: int, inspector: StreamInspector) -> Billed:
    """``(prompt, prompt estimated?, completion)`` for a stream: the upstream's usage once it has sent it;
    before that (cancelled, cut short, still running) the gateway's prompt estimate and the chunks delivered
    (one token per chunk with output)."""
    usage = inspector.usage
    if usage is not None:
        return Billed(usage.prompt_tokens, False, usage.completion_tokens)
    return Billed(prompt_estimate, True, inspector.delivered_tokens)


def _billed(prompt_estimate: int, usage: CompletionUsage | None, delivered_tokens: int) -> Billed:
    """:func:`_billable` for a translated stream, which reads the usage from decoded chunks."""
    if usage is not None:
        return Billed(usage.prompt_tokens, False, usage.completion_tokens)
    return Billed(prompt_estimate, True, delivered_tokens)
