"""Wire types of OpenAI's Responses API: ``POST /v1/responses``, its ``response`` object and its stream events.

Field names and the event grammar follow the official API reference and openai-python's ``types/responses``.
Decoding is tolerant (unknown fields are ignored; what real servers leave out gets a default). Encoding is
exact: the output side (the ``response`` object, its items and every event) writes each field the SDK's
models require, ``null`` included, because openai-python and openai-node read them without defaults. The
request writes only what was set, as a client sends it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "FunctionCallOutputItem",
    "IncompleteDetails",
    "InputFile",
    "InputImage",
    "InputText",
    "ItemReference",
    "ResponseCompletedEvent",
    "ResponseContentPart",
    "ResponseContentPartAddedEvent",
    "ResponseContentPartDoneEvent",
    "ResponseCreatedEvent",
    "ResponseError",
    "ResponseErrorEvent",
    "ResponseFailedEvent",
    "ResponseFunctionCall",
    "ResponseFunctionCallArgumentsDeltaEvent",
    "ResponseFunctionCallArgumentsDoneEvent",
    "ResponseInProgressEvent",
    "ResponseIncompleteEvent",
    "ResponseInputMessage",
    "ResponseInputTokensDetails",
    "ResponseObject",
    "ResponseOutputItem",
    "ResponseOutputItemAddedEvent",
    "ResponseOutputItemDoneEvent",
    "ResponseOutputMessage",
    "ResponseOutputRefusal",
    "ResponseOutputText",
    "ResponseOutputTokensDetails",
    "ResponseReasoningItem",
    "ResponseReasoningSummaryTextDeltaEvent",
    "ResponseReasoningText",
    "ResponseReasoningTextDeltaEvent",
    "ResponseReasoningTextDoneEvent",
    "ResponseRefusalDeltaEvent",
    "ResponseRefusalDoneEvent",
    "ResponseStreamEvent",
    "ResponseSummaryText",
    "ResponseTextConfig",
    "ResponseTextDeltaEvent",
    "ResponseTextDoneEvent",
    "ResponseTextFormat",
    "ResponseUsage",
    "ResponsesFunctionTool",
    "ResponsesRequest",
    "ResponsesToolChoice",
]

# --- content parts ----------------------------------------------------------------------------------


class ResponseOutputText(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="output_text"):
    text: str = ""
    annotations: list[Any] = msgspec.field(default_factory=list)


class ResponseOutputRefusal(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="refusal"):
    refusal: str = ""


class ResponseReasoningText(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="reasoning_text"):
    text: str = ""


class ResponseSummaryText(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="summary_text"):
    text: str = ""


#: What ``response.content_part.added`` / ``.done`` carry.
ResponseContentPart = ResponseOutputText | ResponseOutputRefusal | ResponseReasoningText

# --- output items -------------------------------------------------------------------------------------

ItemStatus = Literal["in_progress", "completed", "incomplete"]


class ResponseOutputMessage(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="message"):
    id: str = ""
    role: str = "assistant"
    status: ItemStatus = "completed"
    content: list[ResponseOutputText | ResponseOutputRefusal] = msgspec.field(default_factory=list)


class ResponseFunctionCall(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="function_call"):
    """A ``function_call`` item: an output of the model, and an input item when a client replays it."""

    id: str | None = None
    call_id: str = ""
    name: str = ""
    #: JSON text, exactly as the model produced it (it may not parse when the turn was cut).
    arguments: str = ""
    status: ItemStatus | None = None


class ResponseReasoningItem(msgspec.Struct, kw_only=True, gc=False, tag_field="type", tag="reasoning"):
    id: str = ""
    summary: list[ResponseSummaryText] = msgspec.field(default_factory=list)
    #: The raw reasoning text (what chat streams send as ``reasoning_content``).
    content: list[ResponseReasoningText] | None = None
    encrypted_content: str | None = None
    status: ItemStatus | None = None


ResponseOutputItem = ResponseOutputMessage | ResponseFunctionCall | ResponseReasoningItem

# --- the response object ----------------------------------------------------------------------------


class ResponseInputTokensDetails(msgspec.Struct, kw_only=True, gc=False):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class ResponseOutputTokensDetails(msgspec.Struct, kw_only=True, gc=False):
    reasoning_tokens: int = 0


class ResponseUsage(msgspec.Struct, kw_only=True, gc=False):
    input_tokens: int = 0
    input_tokens_details: ResponseInputTokensDetails = msgspec.field(default_factory=ResponseInputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: ResponseOutputTokensDetails = msgspec.field(default_factory=ResponseOutputTokensDetails)
    total_tokens: int = 0


class ResponseError(msgspec.Struct, kw_only=True, gc=False):
    """The ``error`` of a failed response. OpenAI's ``code`` is one of a fixed set (``server_error``, ...)."""

    code: str = "server_error"
    message: str = ""


class IncompleteDetails(msgspec.Struct, kw_only=True, gc=False):
    #: ``max_output_tokens`` or ``content_filter``.
    reason: str | None = None


class ResponseTextFormat(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """``text.format``: ``{"type": "text"}``, ``{"type": "json_object"}`` or a named ``json_schema``."""

    type: str = "text"
    name: str | None = None
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseTextConfig(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    format: ResponseTextFormat | None = None
    verbosity: str | None = None


class ResponsesFunctionTool(msgspec.Struct, kw_only=True, gc=False):
    """A tool: only ``type: "function"`` is served; others decode (so the error can name them) and are refused."""

    type: str = "function"
    name: str = ""
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ResponsesToolChoice(msgspec.Struct, kw_only=True, gc=False):
    """A forced tool: ``{"type": "function", "name": ...}``."""

    type: str = "function"
    name: str | None = None


class ResponseObject(msgspec.Struct, kw_only=True, gc=False):
    """The ``response`` object: the answer of ``POST /v1/responses`` and the body of the lifecycle events."""

    id: str = ""
    object: str = "response"
    created_at: int | float = 0
    #: ``in_progress``, ``completed``, ``incomplete`` or ``failed``.
    status: str = "in_progress"
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | list[Any] | None = None
    max_output_tokens: int | None = None
    model: str = ""
    output: list[ResponseOutputItem] = msgspec.field(default_factory=list)
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    store: bool | None = None
    temperature: float | None = None
    text: ResponseTextConfig | None = None
    tool_choice: str | ResponsesToolChoice = "auto"
    tools: list[ResponsesFunctionTool] = msgspec.field(default_factory=list)
    top_p: float | None = None
    truncation: str | None = None
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None

    @property
    def output_text(self) -> str:
        """The text of every ``output_text`` part, joined (what openai-python's ``output_text`` gives)."""
        return "".join(
            part.text
            for item in self.output
            if isinstance(item, ResponseOutputMessage)
            for part in item.content
            if isinstance(part, ResponseOutputText)
        )


# --- input items (request side) -----------------------------------------------------------------------


class InputText(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type", tag="input_text"):
    text: str


class InputImage(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type", tag="input_image"):
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class InputFile(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type", tag="input_file"):
    file_id: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None


InputContent = InputText | InputImage | InputFile | ResponseOutputText | ResponseOutputRefusal


class ResponseInputMessage(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type", tag="message"):
    """A message input item; ``type`` may be left out on the wire, as the API allows."""

    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputContent]
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(
    msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type", tag="function_call_output"
):
    call_id: Annotated[str, Meta(min_length=1)]
    output: str | list[InputContent]
    id: str | None = None
    status: str | None = None


class ItemReference(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type", tag="item_reference"):
    id: str


# --- the request --------------------------------------------------------------------------------------

Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
Probability = Annotated[float, Meta(ge=0.0, le=1.0)]


class ResponsesRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The body of ``POST /v1/responses``.

    ``input`` is a string or a list of items (:class:`ResponseInputMessage`, :class:`ResponseFunctionCall`,
    :class:`FunctionCallOutputItem`, :class:`ResponseReasoningItem`, :class:`ItemReference`). It stays
    loosely typed here because a message item may leave out its ``type``, which a tagged union cannot
    express; the translation reads each item and names the bad one by its path.
    """

    model: str
    input: str | list[Any] | None = None
    instructions: str | None = None
    tools: list[ResponsesFunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ResponsesToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: ResponseTextConfig | None = None
    max_output_tokens: Annotated[int, Meta(ge=1)] | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    reasoning: dict[str, Any] | None = None
    truncation: str | None = None
    user: str | None = None
    service_tier: str | None = None
    include: list[str] | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None


# --- stream events ----------------------------------------------------------------------------------


class _Event(msgspec.Struct, kw_only=True, gc=False, tag_field="type"):
    #: Strictly increasing across one stream, from 0.
    sequence_number: int = 0


class _ResponseEvent(_Event):
    """An event that carries the whole response as it stands."""

    response: ResponseObject = msgspec.field(default_factory=ResponseObject)


class _ItemEvent(_Event):
    """An event about one item of the response's output."""

    item_id: str = ""
    output_index: int = 0


class _PartEvent(_ItemEvent):
    """An event about one content part of an output item."""

    content_index: int = 0


class ResponseCreatedEvent(_ResponseEvent, tag="response.created"): ...


class ResponseInProgressEvent(_ResponseEvent, tag="response.in_progress"): ...


class ResponseCompletedEvent(_ResponseEvent, tag="response.completed"): ...


class ResponseIncompleteEvent(_ResponseEvent, tag="response.incomplete"): ...


class ResponseFailedEvent(_ResponseEvent, tag="response.failed"): ...


class ResponseOutputItemAddedEvent(_Event, tag="response.output_item.added"):
    output_index: int = 0
    item: ResponseOutputItem = msgspec.field(default_factory=ResponseOutputMessage)


class ResponseOutputItemDoneEvent(_Event, tag="response.output_item.done"):
    output_index: int = 0
    item: ResponseOutputItem = msgspec.field(default_factory=ResponseOutputMessage)


class ResponseContentPartAddedEvent(_PartEvent, tag="response.content_part.added"):
    part: ResponseContentPart = msgspec.field(default_factory=ResponseOutputText)


class ResponseContentPartDoneEvent(_PartEvent, tag="response.content_part.done"):
    part: ResponseContentPart = msgspec.field(default_factory=ResponseOutputText)


class ResponseTextDeltaEvent(_PartEvent, tag="response.output_text.delta"):
    delta: str = ""
    logprobs: list[Any] = msgspec.field(default_factory=list)


class ResponseTextDoneEvent(_PartEvent, tag="response.output_text.done"):
    text: str = ""
    logprobs: list[Any] = msgspec.field(default_factory=list)


class ResponseRefusalDeltaEvent(_PartEvent, tag="response.refusal.delta"):
    delta: str = ""


class ResponseRefusalDoneEvent(_PartEvent, tag="response.refusal.done"):
    refusal: str = ""


class ResponseReasoningTextDeltaEvent(_PartEvent, tag="response.reasoning_text.delta"):
    delta: str = ""


class ResponseReasoningTextDoneEvent(_PartEvent, tag="response.reasoning_text.done"):
    text: str = ""


class ResponseReasoningSummaryTextDeltaEvent(_ItemEvent, tag="response.reasoning_summary_text.delta"):
    """Read only (OpenAI's own models stream summaries); chunkwise writes the raw reasoning text instead."""

    summary_index: int = 0
    delta: str = ""


class ResponseFunctionCallArgumentsDeltaEvent(_ItemEvent, tag="response.function_call_arguments.delta"):
    delta: str = ""


class ResponseFunctionCallArgumentsDoneEvent(_ItemEvent, tag="response.function_call_arguments.done"):
    arguments: str = ""


class ResponseErrorEvent(_Event, tag="error"):
    """An error inside the stream; chunkwise follows it with ``response.failed``."""

    code: str | None = None
    message: str = ""
    param: str | None = None


ResponseStreamEvent = (
    ResponseCreatedEvent
    | ResponseInProgressEvent
    | ResponseCompletedEvent
    | ResponseIncompleteEvent
    | ResponseFailedEvent
    | ResponseOutputItemAddedEvent
    | ResponseOutputItemDoneEvent
    | ResponseContentPartAddedEvent
    | ResponseContentPartDoneEvent
    | ResponseTextDeltaEvent
    | ResponseTextDoneEvent
    | ResponseRefusalDeltaEvent
    | ResponseRefusalDoneEvent
    | ResponseReasoningTextDeltaEvent
    | ResponseReasoningTextDoneEvent
    | ResponseReasoningSummaryTextDeltaEvent
    | ResponseFunctionCallArgumentsDeltaEvent
    | ResponseFunctionCallArgumentsDoneEvent
    | ResponseErrorEvent
)
