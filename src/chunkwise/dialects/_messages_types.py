"""Wire types of Anthropic's Messages API: ``POST /v1/messages``, its ``message`` object, stream events and errors.

Field names and the event grammar follow Anthropic's API reference and anthropic-sdk-python's ``types``.
Decoding is tolerant (unknown fields are ignored, what servers leave out gets a default); encoding of the
output side is exact, every field the SDK's models require written, ``null`` included.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "ContentBlockDeltaEvent",
    "ContentBlockStartEvent",
    "ContentBlockStopEvent",
    "ImageBlockParam",
    "InputJSONDelta",
    "MessageDelta",
    "MessageDeltaEvent",
    "MessageDeltaUsage",
    "MessageParam",
    "MessageStartEvent",
    "MessageStopEvent",
    "MessageTokensCount",
    "MessagesErrorDetail",
    "MessagesErrorEvent",
    "MessagesErrorResponse",
    "MessagesMetadata",
    "MessagesRequest",
    "MessagesResponse",
    "MessagesStreamEvent",
    "MessagesTool",
    "MessagesToolChoice",
    "MessagesUsage",
    "PingEvent",
    "RedactedThinkingBlock",
    "SignatureDelta",
    "TextBlock",
    "TextDelta",
    "ThinkingBlock",
    "ThinkingDelta",
    "ToolResultBlockParam",
    "ToolUseBlock",
]

# --- content blocks (a message's content, and what clients send back) ----------------------------------


class TextBlock(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="text"):
    text: str = ""
    #: Left out unless there are citations, as Anthropic does: clients such as the Vercel AI SDK's Anthropic
    #: provider accept a list or no field, and refuse ``null``.
    citations: list[Any] | None | msgspec.UnsetType = msgspec.UNSET


class ToolUseBlock(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="tool_use"):
    id: str = ""
    name: str = ""
    #: The arguments as a JSON object (streamed as ``input_json_delta`` text).
    input: dict[str, Any] = msgspec.field(default_factory=dict)


class ThinkingBlock(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="thinking"):
    thinking: str = ""
    #: Anthropic signs its own thinking; chunkwise has no signature to give and sends ``""``.
    signature: str = ""


class RedactedThinkingBlock(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="redacted_thinking"):
    data: str = ""


ContentBlock = TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock

# --- the message object -------------------------------------------------------------------------------


class MessagesUsage(msgspec.Struct, kw_only=True, gc=False):
    """Anthropic counts cache reads apart: ``input_tokens`` is the prompt minus ``cache_read_input_tokens``."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessagesResponse(msgspec.Struct, kw_only=True, gc=False):
    """The ``message`` object: the answer of ``POST /v1/messages`` and the body of ``message_start``."""

    id: str = ""
    type: str = "message"
    role: str = "assistant"
    model: str = ""
    content: list[ContentBlock] = msgspec.field(default_factory=list)
    #: ``end_turn``, ``max_tokens``, ``stop_sequence``, ``tool_use``, ``pause_turn`` or ``refusal``.
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: MessagesUsage = msgspec.field(default_factory=MessagesUsage)


class MessageTokensCount(msgspec.Struct, kw_only=True, gc=False):
    """The answer of ``POST /v1/messages/count_tokens``."""

    input_tokens: int = 0


# --- errors -------------------------------------------------------------------------------------------


class MessagesErrorDetail(msgspec.Struct, kw_only=True, gc=False):
    #: ``invalid_request_error``, ``authentication_error``, ``permission_error``, ``not_found_error``,
    #: ``request_too_large``, ``rate_limit_error``, ``api_error``, ``overloaded_error``, ...
    type: str = "api_error"
    message: str = ""


class MessagesErrorResponse(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="error"):
    """The body of every Anthropic error answer: ``{"type": "error", "error": {"type", "message"}}``."""

    error: MessagesErrorDetail = msgspec.field(default_factory=MessagesErrorDetail)
    request_id: str | None = None


# --- stream events ----------------------------------------------------------------------------------


class TextDelta(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="text_delta"):
    text: str = ""


class InputJSONDelta(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="input_json_delta"):
    partial_json: str = ""


class ThinkingDelta(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="thinking_delta"):
    thinking: str = ""


class SignatureDelta(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="signature_delta"):
    signature: str = ""


BlockDelta = TextDelta | InputJSONDelta | ThinkingDelta | SignatureDelta


class MessageDelta(msgspec.Struct, kw_only=True, gc=False):
    stop_reason: str | None = None
    stop_sequence: str | None = None


class MessageDeltaUsage(msgspec.Struct, kw_only=True, gc=False):
    """Cumulative counts at the end of the stream."""

    output_tokens: int = 0
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageStartEvent(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="message_start"):
    message: MessagesResponse = msgspec.field(default_factory=MessagesResponse)


class ContentBlockStartEvent(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="content_block_start"):
    index: int = 0
    content_block: ContentBlock = msgspec.field(default_factory=TextBlock)


class ContentBlockDeltaEvent(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="content_block_delta"):
    index: int = 0
    delta: BlockDelta = msgspec.field(default_factory=TextDelta)


class ContentBlockStopEvent(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="content_block_stop"):
    index: int = 0


class MessageDeltaEvent(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="message_delta"):
    delta: MessageDelta = msgspec.field(default_factory=MessageDelta)
    usage: MessageDeltaUsage = msgspec.field(default_factory=MessageDeltaUsage)


class MessageStopEvent(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="message_stop"):
    pass


class PingEvent(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="ping"):
    pass


class MessagesErrorEvent(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="error"):
    """An error inside the stream; it ends the stream (no ``message_stop`` follows)."""

    error: MessagesErrorDetail = msgspec.field(default_factory=MessagesErrorDetail)


MessagesStreamEvent = (
    MessageStartEvent
    | ContentBlockStartEvent
    | ContentBlockDeltaEvent
    | ContentBlockStopEvent
    | MessageDeltaEvent
    | MessageStopEvent
    | PingEvent
    | MessagesErrorEvent
)

# --- the request --------------------------------------------------------------------------------------


class ImageBlockParam(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type", tag="image"):
    """Decoded so that the refusal can name it; the engine reads no images."""

    source: dict[str, Any] | None = None


class ToolResultBlockParam(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type", tag="tool_result"):
    tool_use_id: Annotated[str, Meta(min_length=1)]
    content: str | list[dict[str, Any]] | None = None
    is_error: bool | None = None


class MessageParam(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One turn of the conversation. ``content`` blocks stay loosely typed so that any block decodes and the
    translation can name an unsupported one by its path (``messages[0].content[1]``)."""

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesTool(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A client tool. Anthropic's server tools (``web_search_...``, ``bash_...``) carry a ``type``; they are refused."""

    name: Annotated[str, Meta(min_length=1, max_length=128)]
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class MessagesToolChoice(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class MessagesMetadata(msgspec.Struct, kw_only=True, omit_defaults=True):
    user_id: str | None = None


class MessagesRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The body of ``POST /v1/messages`` (and, without ``max_tokens``, of ``/v1/messages/count_tokens``)."""

    model: str
    messages: list[MessageParam]
    max_tokens: Annotated[int, Meta(ge=1)] | None = None
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    tools: list[MessagesTool] | None = None
    tool_choice: MessagesToolChoice | None = None
    metadata: MessagesMetadata | None = None
    thinking: dict[str, Any] | None = None
    service_tier: str | None = None
