"""Wire types for the chat-completions API, as msgspec Structs.

Decoding is tolerant: unknown fields are ignored and fields that real servers leave out get defaults.
Encoding omits fields that were never set, except those the wire always carries (``object``, token
counts, ``choices``). Decode with :func:`msgspec.json.decode` (``type=ChatCompletionChunk``) or the
typed decoders here, which are built once and reused.
"""

from __future__ import annotations

import msgspec

from ._chunk import (
    ChatCompletionChunk,
    ChoiceDelta,
    ChoiceDeltaFunctionCall,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChunkChoice,
)
from ._common import (
    ChoiceLogprobs,
    CompletionTokensDetails,
    CompletionUsage,
    PromptTokensDetails,
    StopReason,
    TokenLogprob,
    TopLogprob,
)
from ._completion import ChatCompletion, ChatCompletionMessage, Choice, FunctionCall, ToolCall
from ._embedding import Embedding, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage
from ._errors import ErrorDetail, ErrorResponse
from ._models import Model, ModelList
from ._request import (
    AssistantMessage,
    ChatCompletionRequest,
    ContentPart,
    DeveloperMessage,
    FunctionDefinition,
    FunctionMessage,
    ImageContentPart,
    ImageURL,
    InputAudio,
    InputAudioContentPart,
    JSONSchemaSpec,
    Message,
    MessageContent,
    NamedFunctionCall,
    NamedToolChoice,
    NamedToolChoiceFunction,
    ResponseFormat,
    ResponseFormatJSONObject,
    ResponseFormatJSONSchema,
    ResponseFormatText,
    StreamOptions,
    SystemMessage,
    TextContentPart,
    Tool,
    ToolChoice,
    ToolMessage,
    UserMessage,
)
from ._text_completion import Completion, CompletionChoice, CompletionLogprobs, CompletionRequest
from ._tokenize import DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse

__all__ = [
    "AssistantMessage",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatCompletionRequest",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaFunctionCall",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChoiceLogprobs",
    "ChunkChoice",
    "Completion",
    "CompletionChoice",
    "CompletionLogprobs",
    "CompletionRequest",
    "CompletionTokensDetails",
    "CompletionUsage",
    "ContentPart",
    "DetokenizeRequest",
    "DetokenizeResponse",
    "DeveloperMessage",
    "Embedding",
    "EmbeddingInput",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "EmbeddingUsage",
    "ErrorDetail",
    "ErrorResponse",
    "FunctionCall",
    "FunctionDefinition",
    "FunctionMessage",
    "ImageContentPart",
    "ImageURL",
    "InputAudio",
    "InputAudioContentPart",
    "JSONSchemaSpec",
    "Message",
    "MessageContent",
    "Model",
    "ModelList",
    "NamedFunctionCall",
    "NamedToolChoice",
    "NamedToolChoiceFunction",
    "PromptTokensDetails",
    "ResponseFormat",
    "ResponseFormatJSONObject",
    "ResponseFormatJSONSchema",
    "ResponseFormatText",
    "StopReason",
    "StreamOptions",
    "SystemMessage",
    "TextContentPart",
    "TokenLogprob",
    "TokenizeRequest",
    "TokenizeResponse",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "ToolMessage",
    "TopLogprob",
    "UserMessage",
    "chunk_decoder",
    "completion_decoder",
    "encode",
]

#: Reusable typed decoders (msgspec's advice: build once, reuse on the hot path).
chunk_decoder: msgspec.json.Decoder[ChatCompletionChunk] = msgspec.json.Decoder(ChatCompletionChunk)
completion_decoder: msgspec.json.Decoder[ChatCompletion] = msgspec.json.Decoder(ChatCompletion)

_encoder = msgspec.json.Encoder()


def encode(value: msgspec.Struct) -> bytes:
    """Compact JSON for any wire type, with unset fields left out."""
    return _encoder.encode(value)
