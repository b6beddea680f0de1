"""``POST /tokenize`` and ``POST /detokenize``, as llama-server and vLLM serve them.

Both answer at once from the engine's vocabulary on the event loop (no model run, no scheduler), so a
client can count a prompt (chat ``messages`` through the template included) before it sends it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..edge import JSONResponse, read_json
from ..engine import Engine, TokenizingEngine
from ..types import DetokenizeRequest, TokenizeRequest
from ._errors import ModelNotFoundError, NoTokenizerError
from ._settings import ServerSettings

__all__ = ["TokenEndpoints"]


class TokenEndpoints:
    """The token routes of one app."""

    def __init__(self, *, engine: Engine, settings: ServerSettings) -> None:
        self._engine = engine
        self._settings = settings

    def routes(self) -> list[Route]:
        return [
            Route("/tokenize", self.tokenize, methods=["POST"]),
            Route("/detokenize", self.detokenize, methods=["POST"]),
        ]

    def _tokenizer(self, model: str | None) -> TokenizingEngine:
        if model is not None and model != self._engine.model_id:
            raise ModelNotFoundError(model, self._engine.model_id)
        if not isinstance(self._engine, TokenizingEngine):
            raise NoTokenizerError()
        return self._engine

    async def tokenize(self, request: Request) -> Response:
        body, _ = await read_json(request, TokenizeRequest, limit=self._settings.max_body_size)
        return JSONResponse(self._tokenizer(body.model).tokenize_request(body))

    async def detokenize(self, request: Request) -> Response:
        body, _ = await read_json(request, DetokenizeRequest, limit=self._settings.max_body_size)
        return JSONResponse(self._tokenizer(body.model).detokenize_request(body))
