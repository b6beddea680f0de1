"""``GET /openapi.json``: an OpenAPI 3.1 document generated from the wire types, never written by hand.

msgspec produces JSON Schema 2020-12 for every Struct, which OpenAPI 3.1 uses as is; this module only
adds the paths, their status codes and the security scheme around those components.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import msgspec

from .._version import __version__
from ..confidential import (
    ConfidentialComputeRequest,
    ConfidentialComputeResponse,
    NodesCreateLockRequest,
    NodesCreateLockResponse,
)
from ..dialects import (
    MessagesErrorResponse,
    MessagesRequest,
    MessagesResponse,
    MessagesStreamEvent,
    MessageTokensCount,
    ResponseObject,
    ResponsesRequest,
    ResponseStreamEvent,
)
from ..edge import ResponseDeleted
from ..types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    DetokenizeRequest,
    DetokenizeResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorResponse,
    Model,
    ModelList,
    TokenizeRequest,
    TokenizeResponse,
)
from ._responses import HealthStatus
from ._signing import SigningKeyInfo

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{name}"

_ERROR_STATUSES = {
    "400": "Malformed JSON, a schema violation (`param` names the field) or a prompt over the context.",
    "401": "Missing or wrong key (`Authorization: Bearer` or `x-api-key`).",
    "404": "Unknown model (`model_not_found`).",
    "413": "The body is over the server's limit.",
    "415": "The body is not JSON.",
    "429": "The queue is full; see `Retry-After`.",
    "500": "The engine failed.",
}


def _ref(struct: type[msgspec.Struct]) -> dict[str, str]:
    return {"$ref": _REF.format(name=struct.__name__)}


def _json(struct: type[msgspec.Struct], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(struct)}}}


def _json_or_events(
    result: type[msgspec.Struct], event: type[msgspec.Struct] | dict[str, Any], description: str
) -> dict[str, Any]:
    """A 200 that is one JSON body, or with ``stream: true`` server-sent events that each carry an ``event``
    (a Struct, or the schema of several)."""
    events = event if isinstance(event, dict) else _ref(event)
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(result)}, "text/event-stream": {"schema": events}},
    }


def _body(struct: type[msgspec.Struct]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(struct)}}}


#: What a generation endpoint may answer besides 200.
_GENERATION_ERRORS = ("400", "401", "404", "413", "415", "429", "500")


def _errors(*statuses: str) -> dict[str, Any]:
    return {status: _json(ErrorResponse, _ERROR_STATUSES[status]) for status in statuses}


def _messages_errors(*statuses: str) -> dict[str, Any]:
    return {status: _json(MessagesErrorResponse, _ERROR_STATUSES[status]) for status in statuses}


def _union(union: Any) -> dict[str, Any]:
    """A schema for a union of Structs (a stream's events): one of their components."""
    return {"oneOf": [_ref(member) for member in typing.get_args(union)]}


_CHAT_STREAM = (
    "With `stream: false`, the whole result. With `stream: true`, server-sent events: each "
    "`data:` line holds one chunk, keep-alive comments may come while the request waits, an "
    'engine failure arrives as `data: {"error": ...}`, and the stream ends with `data: [DONE]`.'
)
_DIALECT_STREAM = (
    "With `stream: false`, the whole result. With `stream: true`, server-sent events, each an `event:` line "
    "naming its type and a `data:` line holding it; an engine failure arrives as the dialect's error event."
)


def _generation(
    summary: str,
    request: type[msgspec.Struct],
    result: type[msgspec.Struct],
    stream: type[msgspec.Struct] | dict[str, Any],
    *,
    description: str = _CHAT_STREAM,
    errors: Callable[..., dict[str, Any]] = _errors,
) -> dict[str, Any]:
    return {
        "summary": summary,
        "requestBody": _body(request),
        "responses": {
            "200": _json_or_events(result, stream, description),
            **errors(*_GENERATION_ERRORS),
        },
    }


def _post(
    summary: str, operation: str, request: type[msgspec.Struct], answer: dict[str, Any], *statuses: str
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "operationId": operation,
            "requestBody": _body(request),
            "responses": {"200": answer, **_errors(*statuses)},
        }
    }


_CONFIDENTIAL_GENERATION = (
    "One encrypted envelope for the whole answer, or with `stream: true` one per chunk as server-sent events, "
    "each with a fresh nonce, the last carrying plaintext `usage`, and no `[DONE]`. The decrypted chunks carry "
    "`chunkwise_chain` links."
)


def _confidential(summary: str, operation: str, description: str, *, streams: bool) -> dict[str, Any]:
    envelope = ConfidentialComputeResponse
    answer = _json_or_events(envelope, envelope, description) if streams else _json(envelope, description)
    return _post(summary, operation, ConfidentialComputeRequest, answer, *_GENERATION_ERRORS)


def openapi_document(*, model_id: str, requires_key: bool) -> dict[str, Any]:
    """The OpenAPI description of this server, with every schema taken from :mod:`chunkwise.types`."""
    _, schemas = msgspec.json.schema_components(
        [
            ChatCompletionRequest,
            ChatCompletionChunk,
            ChatCompletion,
            CompletionRequest,
            Completion,
            ModelList,
            Model,
            ErrorResponse,
            HealthStatus,
            ResponsesRequest,
            ResponseObject,
            *typing.get_args(ResponseStreamEvent),
            ResponseDeleted,
            MessagesRequest,
            MessagesResponse,
            *typing.get_args(MessagesStreamEvent),
            MessagesErrorResponse,
            MessageTokensCount,
            NodesCreateLockRequest,
            NodesCreateLockResponse,
            ConfidentialComputeRequest,
            ConfidentialComputeResponse,
            SigningKeyInfo,
            EmbeddingRequest,
            EmbeddingResponse,
            TokenizeRequest,
            TokenizeResponse,
            DetokenizeRequest,
            DetokenizeResponse,
        ],
        ref_template=_REF,
    )
    protected: dict[str, Any] = {"security": [{"bearerAuth": []}, {"apiKeyHeader": []}]} if requires_key else {}
    paths: dict[str, Any] = {
        "/v1/chat/completions": {
            "post": {
                **_generation(
                    "Create a chat completion", ChatCompletionRequest, ChatCompletion, _ref(ChatCompletionChunk)
                ),
                "operationId": "createChatCompletion",
                **protected,
            }
        },
        "/v1/completions": {
            "post": {
                **_generation("Create a text completion (legacy)", CompletionRequest, Completion, Completion),
                "operationId": "createCompletion",
                **protected,
            }
        },
        "/v1/responses": {
            "post": {
                **_generation(
                    "Create a response (OpenAI's Responses API)",
                    ResponsesRequest,
                    ResponseObject,
                    _union(ResponseStreamEvent),
                    description=_DIALECT_STREAM,
                ),
                "operationId": "createResponse",
                **protected,
            }
        },
        "/v1/responses/{response_id}": {
            "parameters": [{"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "summary": "A stored response",
                "operationId": "getResponse",
                "responses": {"200": _json(ResponseObject, "The response."), **_errors("401", "404")},
                **protected,
            },
            "delete": {
                "summary": "Delete a stored response",
                "operationId": "deleteResponse",
                "responses": {"200": _json(ResponseDeleted, "Deleted."), **_errors("401", "404")},
                **protected,
            },
        },
        "/v1/messages": {
            "post": {
                **_generation(
                    "Create a message (Anthropic's Messages API)",
                    MessagesRequest,
                    MessagesResponse,
                    _union(MessagesStreamEvent),
                    description=_DIALECT_STREAM,
                    errors=_messages_errors,
                ),
                "operationId": "createMessage",
                **protected,
            }
        },
        "/v1/messages/count_tokens": {
            "post": {
                "summary": "Count a Messages request's input tokens",
                "operationId": "countMessageTokens",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(MessagesRequest)}}},
                "responses": {
                    "200": _json(MessageTokensCount, "The prompt's tokens."),
                    **_messages_errors("400", "401", "404", "413", "415"),
                },
                **protected,
            }
        },
        "/v1/models": {
            "get": {
                "summary": "List the served models",
                "operationId": "listModels",
                "responses": {"200": _json(ModelList, "The served models."), **_errors("401")},
                **protected,
            }
        },
        "/v1/models/{model}": {
            "get": {
                "summary": "Describe a served model",
                "operationId": "retrieveModel",
                "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json(Model, "The model."), **_errors("401", "404")},
                **protected,
            }
        },
        "/health": {
            "get": {
                "summary": "Liveness",
                "operationId": "health",
                "responses": {"200": _json(HealthStatus, "The server is up and its model is loaded.")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {"200": {"description": "Text exposition format.", "content": {"text/plain": {}}}},
            }
        },
        "/v1/nodes/lock": {
            "post": {
                "summary": "The X25519 key to encrypt confidential requests to (Atoma's lock, without stacks)",
                "operationId": "nodesCreateLock",
                "requestBody": _body(NodesCreateLockRequest),
                "responses": {
                    "200": _json(
                        NodesCreateLockResponse,
                        "The node key; signed (`signature`, `response_hash`) when the server has a signing key.",
                    ),
                    **_errors("400", "401", "404"),
                },
                **protected,
            }
        },
        "/v1/confidential/chat/completions": _confidential(
            "Create a chat completion end-to-end encrypted (Atoma's confidential compute)",
            "createConfidentialChatCompletion",
            _CONFIDENTIAL_GENERATION,
            streams=True,
        ),
        "/v1/confidential/completions": _confidential(
            "Create a text completion (legacy) end-to-end encrypted",
            "createConfidentialCompletion",
            _CONFIDENTIAL_GENERATION,
            streams=True,
        ),
        "/v1/confidential/embeddings": _confidential(
            "Create embeddings end-to-end encrypted",
            "createConfidentialEmbedding",
            "One encrypted envelope holding the embeddings answer, with plaintext `usage`.",
            streams=False,
        ),
        "/v1/embeddings": _post(
            "Create embeddings: one L2-normalised pooled vector per input",
            "createEmbedding",
            EmbeddingRequest,
            _json(EmbeddingResponse, "The vectors, as numbers or base64 float32; signed with a signing key."),
            *_GENERATION_ERRORS,
        ),
        "/tokenize": _post(
            "Tokenize text, or chat messages through the model's template",
            "tokenize",
            TokenizeRequest,
            _json(TokenizeResponse, "The token ids and their count."),
            "400",
            "401",
            "404",
            "413",
            "415",
        ),
        "/detokenize": _post(
            "The text of token ids",
            "detokenize",
            DetokenizeRequest,
            _json(DetokenizeResponse, "The text."),
            "400",
            "401",
            "404",
            "413",
            "415",
        ),
        "/signing-key": {
            "get": {
                "summary": "The Ed25519 public key that signs every answer (404 when answers are not signed)",
                "operationId": "signingKey",
                "responses": {"200": _json(SigningKeyInfo, "The public key."), **_errors("404")},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {"200": {"description": "OpenAPI 3.1.", "content": {"application/json": {}}}},
            }
        },
    }
    for path in (
        "/v1/confidential/chat/completions",
        "/v1/confidential/completions",
        "/v1/confidential/embeddings",
        "/v1/embeddings",
        "/tokenize",
        "/detokenize",
    ):
        paths[path]["post"].update(protected)
    components: dict[str, Any] = {"schemas": schemas}
    if requires_key:
        components["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer"},
            "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chunkwise",
            "version": __version__,
            "description": (
                f"OpenAI-compatible streaming chat completions, the Responses API and Anthropic Messages, "
                f"serving `{model_id}`."
            ),
        },
        "paths": paths,
        "components": components,
    }
