"""``ChatCompletion``: the complete, non-streamed response (and what reassembly produces)."""

from __future__ import annotations

import msgspec

from ._common import ChatCompletionFields, ChoiceLogprobs, ReasoningText, StopReason
from ._fields import always

__all__ = ["ChatCompletion", "ChatCompletionMessage", "Choice", "FunctionCall", "ToolCall"]


class FunctionCall(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    name: str = always("")
    #: JSON text, exactly as the model produced it (it may not parse).
    arguments: str = always("")


class ToolCall(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    id: str = always("")
    type: str = always("function")
    function: FunctionCall = msgspec.field(default_factory=FunctionCall)


class ChatCompletionMessage(msgspec.Struct, ReasoningText, kw_only=True, omit_defaults=True, gc=False):
    role: str = always("assistant")
    content: str | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None


class Choice(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    index: int = always(0)
    message: ChatCompletionMessage = msgspec.field(default_factory=ChatCompletionMessage)
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None
    stop_reason: StopReason | None = None


class ChatCompletion(ChatCompletionFields[Choice], kw_only=True):
    object: str = always("chat.completion")
