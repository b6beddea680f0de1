"""The whole answer at once: a ``ChatCompletion`` as an Anthropic ``message``, and back; and the error shape.

The stream translation (:mod:`._messages_stream`) uses the same rules, so a streamed message reassembles
to exactly what :func:`completion_to_message` gives for the same chunks.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..types import (
    ChatCompletion,
    ChatCompletionMessage,
    Choice,
    CompletionUsage,
    ErrorDetail,
    FunctionCall,
    PromptTokensDetails,
    StopReason,
    ToolCall,
)
from ._messages_types import (
    ContentBlock,
    MessagesErrorDetail,
    MessagesErrorResponse,
    MessagesResponse,
    MessagesUsage,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
)

__all__ = [
    "completion_to_message",
    "message_to_completion",
    "messages_error",
    "messages_error_detail",
    "messages_error_type",
]

_FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_STOP_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_STATUS_TO_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_ANTHROPIC_TYPES = frozenset([*_STATUS_TO_TYPE.values(), "api_error"])

_decode_object = msgspec.json.Decoder(dict[str, Any]).decode


def stop_reason_for(finish_reason: str | None, stop_reason: StopReason | None) -> tuple[str, str | None]:
    """Anthropic's ``stop_reason`` and ``stop_sequence`` for a chat ending.

    A chat server that stopped on a stop string names it in ``stop_reason`` (vLLM, chunkwise); a number
    there is an end-of-sequence token id, not a stop sequence.
    """
    if finish_reason == "stop" and isinstance(stop_reason, str):
        return "stop_sequence", stop_reason
    return _FINISH_TO_STOP.get(finish_reason or "stop", "end_turn"), None


def finish_reason_for(stop_reason: str | None) -> str:
    return _STOP_TO_FINISH.get(stop_reason or "end_turn", "stop")


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's ``input`` holds: ``{}`` when they are not a JSON object
    (a call cut by the token limit); the streamed ``input_json_delta`` text still carries them whole."""
    try:
        value = _decode_object(arguments)
    except msgspec.MsgspecError:
        return {}
    return value


def tool_use_id(message_id: str, tool_index: int, chat_id: str) -> str:
    """The chat call's own id; a server that sent none gets one made from the message's id."""
    return chat_id or f"toolu_{message_id.removeprefix('msg_')}_{tool_index}"


def usage_to_messages(usage: CompletionUsage) -> MessagesUsage:
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details is not None else 0
    return MessagesUsage(
        input_tokens=usage.prompt_tokens - cached,
        output_tokens=usage.completion_tokens,
        cache_creation_input_tokens=0,
        cache_read_input_tokens=cached,
    )


def usage_to_chat(
    input_tokens: int, output_tokens: int, cache_read: int | None, cache_creation: int | None
) -> CompletionUsage:
    cached = cache_read or 0
    prompt = input_tokens + cached + (cache_creation or 0)
    return CompletionUsage(
        prompt_tokens=prompt,
        completion_tokens=output_tokens,
        total_tokens=prompt + output_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached) if cached else None,
    )


def completion_to_message(completion: ChatCompletion, *, message_id: str, model: str | None = None) -> MessagesResponse:
    """The ``message`` for the first choice of ``completion``."""
    choice = completion.choices[0] if completion.choices else Choice()
    message = choice.message
    content: list[ContentBlock] = []
    # Empty text is no block: OpenAI-style servers open every stream with `content: ""`.
    reasoning = message.reasoning_text
    if reasoning:
        content.append(ThinkingBlock(thinking=reasoning))
    if message.content:
        content.append(TextBlock(text=message.content))
    for tool_index, call in enumerate(message.tool_calls or ()):
        block_id = tool_use_id(message_id, tool_index, call.id)
        content.append(ToolUseBlock(id=block_id, name=call.function.name, input=tool_input(call.function.arguments)))
    stop_reason, stop_sequence = stop_reason_for(choice.finish_reason, choice.stop_reason)
    return MessagesResponse(
        id=message_id,
        model=model if model is not None else completion.model,
        content=content,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        usage=usage_to_messages(completion.usage) if completion.usage is not None else MessagesUsage(),
    )


def message_to_completion(message: MessagesResponse, *, created: int = 0) -> ChatCompletion:
    """The chat completion a ``message`` stands for, as a chat client would have received it."""
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ThinkingBlock):
            reasoning.append(block.thinking)
        elif isinstance(block, ToolUseBlock):
            arguments = msgspec.json.encode(block.input).decode()
            calls.append(ToolCall(id=block.id, function=FunctionCall(name=block.name, arguments=arguments)))
    usage = message.usage
    return ChatCompletion(
        id=message.id,
        created=created,
        model=message.model,
        choices=[
            Choice(
                index=0,
                message=ChatCompletionMessage(
                    content="".join(texts) if texts else None,
                    reasoning_content="".join(reasoning) if reasoning else None,
                    tool_calls=calls or None,
                ),
                finish_reason=finish_reason_for(message.stop_reason),
                stop_reason=message.stop_sequence,
            )
        ],
        usage=usage_to_chat(
            usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens
        ),
    )


def messages_error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status (``api_error`` for any other 5xx)."""
    return _STATUS_TO_TYPE.get(status, "api_error" if status >= 500 else "invalid_request_error")


def messages_error(status: int, message: str, *, request_id: str | None = None) -> MessagesErrorResponse:
    """The body of an error answer in Anthropic's shape, ``{"type": "error", "error": {"type", "message"}}``."""
    return MessagesErrorResponse(
        error=MessagesErrorDetail(type=messages_error_type(status), message=message), request_id=request_id
    )


def messages_error_detail(error: ErrorDetail) -> MessagesErrorDetail:
    """A chat error (an in-stream ``{"error": {...}}`` frame) in Anthropic's shape, for the ``error`` event.

    Anthropic's names are kept where chat used them too (``invalid_request_error``, ``rate_limit_error``);
    any other type is read from the HTTP status a server put in the frame, else it is an ``api_error``.
    """
    kind = error.type or ""
    if kind not in _ANTHROPIC_TYPES:
        status = error.http_status_code if isinstance(error.http_status_code, int) else 500
        kind = messages_error_type(status)
    return MessagesErrorDetail(type=kind, message=error.message)
