"""Requests: ``POST /v1/chat/completions`` and its messages.

Ranges follow OpenAI's documented limits, so a bad value fails decoding with a path that names the
parameter (``$.temperature``), which the server turns into a 400 with ``param``. Unknown fields are
ignored, as every OpenAI-compatible server does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ._completion import ToolCall
from ._fields import always

__all__ = [
    "AssistantMessage",
    "ChatCompletionRequest",
    "ContentPart",
    "DeveloperMessage",
    "FunctionDefinition",
    "FunctionMessage",
    "ImageContentPart",
    "ImageURL",
    "InputAudio",
    "InputAudioContentPart",
    "JSONSchemaSpec",
    "Message",
    "MessageContent",
    "NamedFunctionCall",
    "NamedToolChoice",
    "NamedToolChoiceFunction",
    "ResponseFormat",
    "ResponseFormatJSONObject",
    "ResponseFormatJSONSchema",
    "ResponseFormatText",
    "StreamOptions",
    "SystemMessage",
    "TextContentPart",
    "Tool",
    "ToolChoice",
    "ToolMessage",
    "UserMessage",
]

# --- content parts -------------------------------------------------------------------------------


class TextContentPart(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type", tag="text"):
    text: str


class ImageURL(msgspec.Struct, kw_only=True, omit_defaults=True):
    #: An https URL or a ``data:`` URL with base64 content.
    url: str
    detail: str | None = None


class ImageContentPart(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type", tag="image_url"):
    image_url: ImageURL


class InputAudio(msgspec.Struct, kw_only=True, omit_defaults=True):
    data: str
    format: str


class InputAudioContentPart(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type", tag="input_audio"):
    input_audio: InputAudio


ContentPart = TextContentPart | ImageContentPart | InputAudioContentPart
MessageContent = str | list[ContentPart]

# --- messages, tagged by role ---------------------------------------------------------------------


class SystemMessage(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="role", tag="system"):
    content: MessageContent
    name: str | None = None


class DeveloperMessage(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="role", tag="developer"):
    content: MessageContent
    name: str | None = None


class UserMessage(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="role", tag="user"):
    content: MessageContent
    name: str | None = None


class AssistantMessage(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="role", tag="assistant"):
    #: ``null`` when the turn only made tool calls.
    content: MessageContent | None = None
    name: str | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None


class ToolMessage(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="role", tag="tool"):
    content: MessageContent
    tool_call_id: str = always("")


class FunctionMessage(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="role", tag="function"):
    """The legacy result of a ``function_call``."""

    content: str | None = None
    name: str = always("")


Message = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage

# --- tools, structured output, options --------------------------------------------------------------


class FunctionDefinition(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str | None = None
    #: A JSON Schema object.
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(msgspec.Struct, kw_only=True, omit_defaults=True):
    function: FunctionDefinition
    type: Literal["function"] = always("function")


class NamedToolChoiceFunction(msgspec.Struct, kw_only=True):
    name: str


class NamedToolChoice(msgspec.Struct, kw_only=True, omit_defaults=True):
    function: NamedToolChoiceFunction
    type: Literal["function"] = always("function")


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class NamedFunctionCall(msgspec.Struct, kw_only=True):
    """The legacy ``function_call: {"name": ...}``."""

    name: str


class ResponseFormatText(msgspec.Struct, tag_field="type", tag="text"):
    pass


class ResponseFormatJSONObject(msgspec.Struct, tag_field="type", tag="json_object"):
    pass


class JSONSchemaSpec(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseFormatJSONSchema(msgspec.Struct, kw_only=True, tag_field="type", tag="json_schema"):
    json_schema: JSONSchemaSpec


ResponseFormat = ResponseFormatText | ResponseFormatJSONObject | ResponseFormatJSONSchema


class StreamOptions(msgspec.Struct, kw_only=True, omit_defaults=True):
    #: Send a last chunk with ``choices: []`` and the token counts.
    include_usage: bool | None = None
    #: vLLM's extension: cumulative usage on every chunk.
    continuous_usage_stats: bool | None = None


Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
Probability = Annotated[float, Meta(ge=0.0, le=1.0)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
Bias = Annotated[float, Meta(ge=-100.0, le=100.0)]
PositiveInt = Annotated[int, Meta(ge=1)]
StopText = Annotated[str, Meta(min_length=1)]


class ChatCompletionRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The body of ``POST /v1/chat/completions`` (ATOMA_WIRE.md section 2.5 plus OpenAI's additions)."""

    model: str
    messages: Annotated[list[Message], Meta(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    stop: StopText | Annotated[list[StopText], Meta(max_length=16)] | None = None
    #: Deprecated by OpenAI in favour of ``max_completion_tokens``; both are accepted.
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    #: Token id (as a JSON object key) to a bias added to its logit.
    logit_bias: dict[str, Bias] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    seed: int | None = None
    #: vLLM's and llama-server's extension; Anthropic's ``top_k`` translates to it.
    top_k: Annotated[int, Meta(ge=0)] | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    service_tier: str | None = None
    #: Legacy function calling, superseded by ``tools``; chunkwise serve answers it with 400 (use ``tools``).
    functions: Annotated[
        list[dict[str, Any]] | None,
        Meta(description="Legacy; chunkwise serve answers 400 unless it is absent (use `tools`)."),
    ] = None
    function_call: Annotated[
        Literal["none", "auto"] | NamedFunctionCall | None,
        Meta(description="Legacy; chunkwise serve accepts only `none` (use `tool_choice`)."),
    ] = None

    @property
    def include_usage(self) -> bool:
        """Only an explicit ``stream_options.include_usage: true`` asks for the usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage is True

    @property
    def output_token_limit(self) -> int | None:
        """``max_completion_tokens``, falling back to the deprecated ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)
