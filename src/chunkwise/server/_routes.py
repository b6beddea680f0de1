"""The HTTP endpoints. Each decodes and checks its request, then hands it to the scheduler and the engine."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..edge import JSON_MEDIA_TYPE, BodyTooLargeError, JSONResponse, decode_json, model_list_response, read_json
from ..engine import Engine
from ..signing import ChainSealer, blake2b256
from ..types import (
    ChatCompletionRequest,
    CompletionRequest,
    Model,
    ResponseFormatJSONObject,
    ResponseFormatJSONSchema,
)
from ._admission import Admission
from ._errors import ModelNotFoundError
from ._framing import PLAIN, AnswerEncoding, FramedEncoding, Framer, SignedFramer
from ._generation import CHAT, TEXT, GenerationResponse, StreamKind
from ._metrics import METRICS_CONTENT_TYPE, ServerMetrics
from ._playground import playground
from ._responses import HealthStatus
from ._settings import ServerSettings

__all__ = ["Endpoints"]


#: Bodies up to this size are prepared (template, tokenization) on the event loop, which takes well under a
#: millisecond and keeps the time to first token short; a larger prompt could hold the loop for tens of
#: milliseconds, delaying every other stream, so it is prepared in a worker thread instead.
INLINE_PREPARE_LIMIT = 64 * 1024

PreparedT = TypeVar("PreparedT")


async def _prepare(prepare: Callable[[], PreparedT], body_size: int, *, builds_grammar: bool) -> PreparedT:
    # A grammar is parsed once by a helper process (engine._grammar_check): a round trip the loop must not wait on.
    if body_size <= INLINE_PREPARE_LIMIT and not builds_grammar:
        return prepare()
    return await anyio.to_thread.run_sync(prepare)


def _builds_grammar(body: ChatCompletionRequest | CompletionRequest) -> bool:
    if not isinstance(body, ChatCompletionRequest):
        return False
    return bool(body.tools) or isinstance(body.response_format, ResponseFormatJSONObject | ResponseFormatJSONSchema)


class Endpoints:
    """The routes of one app, sharing its engine, scheduler, metrics and settings."""

    def __init__(
        self,
        *,
        engine: Engine,
        settings: ServerSettings,
        scheduler: Admission,
        metrics: ServerMetrics,
        openapi: bytes,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._scheduler = scheduler
        self._metrics = metrics
        self._openapi = openapi
        self._model = Model(id=engine.model_id, created=int(time.time()), owned_by="chunkwise")

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.retrieve_model, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/", playground, methods=["GET"]),
        ]

    def _check_model(self, model: str) -> None:
        if model != self._engine.model_id:
            raise ModelNotFoundError(model, self._engine.model_id)

    async def chat_completions(self, request: Request) -> Response:
        received_at = time.perf_counter()
        body, raw = await read_json(request, ChatCompletionRequest, limit=self._settings.max_body_size)
        prepare = self._engine.prepare_chat
        return await self._generate(
            request, body, len(raw), prepare, CHAT, "chatcmpl", self._encoding(raw), received_at
        )

    async def completions(self, request: Request) -> Response:
        received_at = time.perf_counter()
        body, raw = await read_json(request, CompletionRequest, limit=self._settings.max_body_size)
        prepare = self._engine.prepare_completion
        return await self._generate(request, body, len(raw), prepare, TEXT, "cmpl", self._encoding(raw), received_at)

    async def confidential_chat(self, request: Request, plaintext: bytes, framer: Framer) -> Response:
        """A chat request opened from a confidential envelope, its answer sealed by ``framer``."""
        received_at = time.perf_counter()
        limit = self._settings.max_body_size
        if len(plaintext) > limit:
            raise BodyTooLargeError(limit)
        body = decode_json(plaintext, ChatCompletionRequest)
        prepare = self._engine.prepare_chat
        encoding = FramedEncoding(framer)
        return await self._generate(request, body, len(plaintext), prepare, CHAT, "chatcmpl", encoding, received_at)

    def _encoding(self, request_body: bytes) -> AnswerEncoding:
        """Answers in the clear, or, with a signing key, signed and chained from the request body's hash."""
        signer = self._settings.signer
        if signer is None:
            return PLAIN
        return FramedEncoding(SignedFramer(ChainSealer(blake2b256(request_body), signer)))

    async def _generate(
        self,
        request: Request,
        body: ChatCompletionRequest | CompletionRequest,
        size: int,
        prepare: Callable[..., Any],
        kind: StreamKind[Any, Any],
        id_prefix: str,
        encoding: AnswerEncoding,
        received_at: float,
    ) -> Response:
        self._check_model(body.model)
        completion_id = f"{id_prefix}-{request.state.request_id}"
        created = int(time.time())
        generation = await _prepare(
            partial(prepare, body, request_id=completion_id, created=created),
            size,
            builds_grammar=_builds_grammar(body),
        )
        return GenerationResponse(
            kind=kind,
            job=generation,
            ticket=self._scheduler.admit(weight=body.n or 1),
            stream=bool(body.stream),
            include_usage=body.include_usage,
            completion_id=completion_id,
            created=created,
            model=self._engine.model_id,
            received_at=received_at,
            metrics=self._metrics,
            keepalive_interval=self._settings.keepalive_interval,
            write_timeout=self._settings.write_timeout,
            encoding=encoding,
        )

    async def list_models(self, request: Request) -> Response:
        return model_list_response([self._model])

    async def retrieve_model(self, request: Request) -> Response:
        self._check_model(request.path_params["model"])
        return JSONResponse(self._model)

    async def health(self, request: Request) -> Response:
        return JSONResponse(HealthStatus(model=self._engine.model_id))

    async def metrics(self, request: Request) -> Response:
        return Response(self._metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        return Response(self._openapi, media_type=JSON_MEDIA_TYPE)
