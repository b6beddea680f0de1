"""The HTTP endpoints. Each decodes and checks its request, then hands it to the scheduler and the engine."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio.to_thread
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..dialects import MessagesRequest, MessageTokensCount, ResponsesRequest, messages_request_to_chat
from ..edge import (
    JSON_MEDIA_TYPE,
    MESSAGES_ERRORS,
    BodyTooLargeError,
    JSONResponse,
    MessagesAnswer,
    ResponseStore,
    decode_json,
    error_response,
    model_list_response,
    read_json,
    responses_answer,
    stored_response_routes,
)
from ..engine import Engine, Generation
from ..types import (
    ChatCompletionRequest,
    CompletionRequest,
    Model,
    ResponseFormatJSONObject,
    ResponseFormatJSONSchema,
)
from ._admission import Admission
from ._errors import ModelNotFoundError
from ._framing import AnswerEncoding, FramedEncoding, Framer, answer_encoding
from ._generation import CHAT, MESSAGES, RESPONSES, TEXT, GenerationResponse, StreamKind
from ._metrics import ServerMetrics
from ._openapi import openapi_document
from ._playground import playground
from ._responses import HealthStatus
from ._settings import ServerSettings

__all__ = ["Endpoints"]


#: Bodies up to this size are prepared (template, tokenization) on the event loop, which takes well under a
#: millisecond and keeps the time to first token short; a larger prompt could hold the loop for tens of
#: milliseconds, delaying every other stream, so it is prepared in a worker thread instead.
INLINE_PREPARE_LIMIT = 64 * 1024

PreparedT = TypeVar("PreparedT")
RequestT = TypeVar("RequestT", ChatCompletionRequest, CompletionRequest)


async def _prepare(prepare: Callable[[], PreparedT], body_size: int, *, builds_grammar: bool) -> PreparedT:
    # A grammar is parsed once by a helper process (engine._grammar_check): a round trip the loop must not wait on.
    if body_size <= INLINE_PREPARE_LIMIT and not builds_grammar:
        return prepare()
    return await anyio.to_thread.run_sync(prepare)


async def _anyone(request: Request) -> None:
    # The server has no accounts: every caller reaches every stored response (the key check is the middleware's).
    return None


def _in_messages_shape(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Every error of a Messages endpoint, whatever raised it, answered in Anthropic's shape."""

    async def shaped(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            return error_response(exc, MESSAGES_ERRORS)

    return shaped


def _builds_grammar(body: ChatCompletionRequest | CompletionRequest) -> bool:
    if not isinstance(body, ChatCompletionRequest):
        return False
    return bool(body.tools) or isinstance(body.response_format, ResponseFormatJSONObject | ResponseFormatJSONSchema)


@dataclass(eq=False, kw_only=True)
class Endpoints:
    """The routes of one app, sharing its engine, scheduler, metrics and settings."""

    engine: Engine
    settings: ServerSettings
    scheduler: Admission
    metrics: ServerMetrics
    responses: ResponseStore
    #: Models other routes answer for (an embedding model), listed in ``/v1/models``.
    also_serves: Sequence[Model] = ()

    def __post_init__(self) -> None:
        created = int(time.time())
        self._model = Model(id=self.engine.model_id, created=created, owned_by="chunkwise")
        self._models = {
            model.id: model
            for model in [self._model, *(msgspec.structs.replace(m, created=created) for m in self.also_serves)]
        }
        document = openapi_document(model_id=self.engine.model_id, requires_key=self.settings.api_key is not None)
        self._openapi = msgspec.json.encode(document)

    @property
    def model_ids(self) -> tuple[str, ...]:
        """Every model this app serves, the engine's first."""
        return tuple(self._models)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/responses", self.create_response, methods=["POST"]),
            *stored_response_routes(self.responses, _anyone),
            Route("/v1/messages", _in_messages_shape(self.create_message), methods=["POST"]),
            Route("/v1/messages/count_tokens", _in_messages_shape(self.count_message_tokens), methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.retrieve_model, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.prometheus_metrics, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/", playground, methods=["GET"]),
        ]

    def _check_model(self, model: str) -> None:
        if model != self.engine.model_id:
            raise ModelNotFoundError(model, self.engine.model_id)

    async def chat_completions(self, request: Request) -> Response:
        received_at = time.perf_counter()
        body, raw = await read_json(request, ChatCompletionRequest, limit=self.settings.max_body_size)
        prepare = self.engine.prepare_chat
        return await self._generate(
            request, body, len(raw), prepare, CHAT, "chatcmpl", self._encoding(raw), received_at
        )

    async def completions(self, request: Request) -> Response:
        received_at = time.perf_counter()
        body, raw = await read_json(request, CompletionRequest, limit=self.settings.max_body_size)
        prepare = self.engine.prepare_completion
        return await self._generate(request, body, len(raw), prepare, TEXT, "cmpl", self._encoding(raw), received_at)

    async def confidential_chat(self, request: Request, plaintext: bytes, framer: Framer) -> Response:
        """A chat request opened from a confidential envelope, its answer sealed by ``framer``."""
        body = self._confidential_body(plaintext, ChatCompletionRequest)
        prepare = self.engine.prepare_chat
        return await self._generate(
            request, body, len(plaintext), prepare, CHAT, "chatcmpl", FramedEncoding(framer), time.perf_counter()
        )

    async def confidential_completions(self, request: Request, plaintext: bytes, framer: Framer) -> Response:
        """A legacy completions request opened from a confidential envelope, its answer sealed by ``framer``."""
        body = self._confidential_body(plaintext, CompletionRequest)
        prepare = self.engine.prepare_completion
        return await self._generate(
            request, body, len(plaintext), prepare, TEXT, "cmpl", FramedEncoding(framer), time.perf_counter()
        )

    def _confidential_body(self, plaintext: bytes, kind: type[RequestT]) -> RequestT:
        limit = self.settings.max_body_size
        if len(plaintext) > limit:
            raise BodyTooLargeError(limit)
        return decode_json(plaintext, kind)

    def _encoding(self, request_body: bytes) -> AnswerEncoding:
        return answer_encoding(self.settings.signer, request_body)

    async def create_response(self, request: Request) -> Response:
        received_at = time.perf_counter()
        body, raw = await read_json(request, ResponsesRequest, limit=self.settings.max_body_size)
        response_id = f"resp_{request.state.request_id}"
        created = int(time.time())
        chat, answer = responses_answer(
            body, self.responses, response_id=response_id, created_at=created, model=self.engine.model_id
        )
        generation = await self._prepared(chat, len(raw), self.engine.prepare_chat, response_id, created)
        return self._respond(chat, generation, RESPONSES, answer, response_id, created, received_at)

    async def create_message(self, request: Request) -> Response:
        received_at = time.perf_counter()
        body, raw = await read_json(request, MessagesRequest, limit=self.settings.max_body_size)
        message_id = f"msg_{request.state.request_id}"
        created = int(time.time())
        chat = messages_request_to_chat(body)
        generation = await self._prepared(chat, len(raw), self.engine.prepare_chat, message_id, created)
        # The prompt's size is known once it is prepared, in time for `message_start`.
        model = self.engine.model_id
        answer = MessagesAnswer(message_id=message_id, model=model, input_tokens=generation.prompt_tokens)
        return self._respond(chat, generation, MESSAGES, answer, message_id, created, received_at)

    async def count_message_tokens(self, request: Request) -> Response:
        body, raw = await read_json(request, MessagesRequest, limit=self.settings.max_body_size)
        chat = messages_request_to_chat(body, count_only=True)
        request_id = f"msg_{request.state.request_id}"
        generation = await self._prepared(chat, len(raw), self.engine.prepare_chat, request_id, int(time.time()))
        # Preparing is what counts the prompt (template and tokenizer); the generation never runs.
        await generation.aclose()
        return JSONResponse(MessageTokensCount(input_tokens=generation.prompt_tokens))

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
        completion_id = f"{id_prefix}-{request.state.request_id}"
        created = int(time.time())
        generation = await self._prepared(body, size, prepare, completion_id, created)
        return self._respond(body, generation, kind, encoding, completion_id, created, received_at)

    async def _prepared(
        self,
        body: ChatCompletionRequest | CompletionRequest,
        size: int,
        prepare: Callable[..., Any],
        completion_id: str,
        created: int,
    ) -> Generation[Any]:
        """The engine's generation for ``body``."""
        self._check_model(body.model)
        return await _prepare(
            partial(prepare, body, request_id=completion_id, created=created),
            size,
            builds_grammar=_builds_grammar(body),
        )

    def _respond(
        self,
        body: ChatCompletionRequest | CompletionRequest,
        generation: Generation[Any],
        kind: StreamKind[Any, Any],
        encoding: AnswerEncoding,
        completion_id: str,
        created: int,
        received_at: float,
    ) -> Response:
        return GenerationResponse(
            kind=kind,
            job=generation,
            ticket=self.scheduler.admit(weight=body.n or 1),
            stream=bool(body.stream),
            include_usage=body.include_usage,
            completion_id=completion_id,
            created=created,
            model=self.engine.model_id,
            received_at=received_at,
            metrics=self.metrics,
            settings=self.settings,
            encoding=encoding,
        )

    async def list_models(self, request: Request) -> Response:
        return model_list_response(self._models.values())

    async def retrieve_model(self, request: Request) -> Response:
        name = request.path_params["model"]
        model = self._models.get(name)
        if model is None:
            raise ModelNotFoundError(name, ", ".join(self._models))
        return JSONResponse(model)

    async def health(self, request: Request) -> Response:
        return JSONResponse(HealthStatus(model=self.engine.model_id))

    async def prometheus_metrics(self, request: Request) -> Response:
        return self.metrics.response()

    async def openapi(self, request: Request) -> Response:
        return Response(self._openapi, media_type=JSON_MEDIA_TYPE)
