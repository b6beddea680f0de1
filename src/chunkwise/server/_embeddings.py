"""``POST /v1/embeddings`` and its confidential twin, answered by an :class:`~chunkwise.engine.Embedder`.

The embedder runs apart from the chat engine (its own llama.cpp context and worker thread), so these
routes never pass the chat scheduler: an embedding request never waits for a chat, nor a chat for it.
The answer is one JSON body, signed and chained with a signing key, or sealed for a confidential client.
"""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..edge import BodyTooLargeError, JSONResponse, decode_json, read_json
from ..engine import Embedder
from ..types import EmbeddingRequest, Model
from ._errors import ModelNotFoundError, NoEmbeddingModelError
from ._framing import AnswerEncoding, FramedEncoding, Framer, answer_encoding
from ._metrics import ServerMetrics
from ._settings import ServerSettings

__all__ = ["EmbeddingEndpoints"]

_ENDPOINT = "embeddings"
#: Bodies up to this size are tokenized on the event loop; a larger one (up to 2048 inputs) could hold the
#: loop long enough to delay every stream, so it is tokenized in a worker thread instead.
_INLINE_PREPARE_LIMIT = 64 * 1024


class EmbeddingEndpoints:
    """The embedding routes of one app; ``embedder`` None answers every request with a 404."""

    def __init__(self, *, embedder: Embedder | None, settings: ServerSettings, metrics: ServerMetrics) -> None:
        self._embedder = embedder
        self._settings = settings
        self._metrics = metrics

    @property
    def model(self) -> Model | None:
        """The embedding model's entry in ``/v1/models``."""
        return None if self._embedder is None else Model(id=self._embedder.model_id, owned_by="chunkwise")

    def routes(self) -> list[Route]:
        return [Route("/v1/embeddings", self.embeddings, methods=["POST"])]

    async def embeddings(self, request: Request) -> Response:
        body, raw = await read_json(request, EmbeddingRequest, limit=self._settings.max_body_size)
        return await self._answer(body, len(raw), answer_encoding(self._settings.signer, raw))

    async def confidential_embeddings(self, request: Request, plaintext: bytes, framer: Framer) -> Response:
        """An embedding request opened from a confidential envelope, its answer sealed by ``framer``."""
        limit = self._settings.max_body_size
        if len(plaintext) > limit:
            raise BodyTooLargeError(limit)
        body = decode_json(plaintext, EmbeddingRequest)
        return await self._answer(body, len(plaintext), FramedEncoding(framer))

    async def _answer(self, body: EmbeddingRequest, size: int, encoding: AnswerEncoding) -> Response:
        embedder = self._embedder
        if embedder is None:
            raise NoEmbeddingModelError()
        if body.model != embedder.model_id:
            raise ModelNotFoundError(body.model, embedder.model_id)
        if size <= _INLINE_PREPARE_LIMIT:
            job = embedder.prepare(body)
        else:
            job = await anyio.to_thread.run_sync(embedder.prepare, body)
        result = await embedder.embed(job)
        self._metrics.prompt_tokens.labels(_ENDPOINT).inc(job.prompt_tokens)
        return JSONResponse(encoding.body(result))
