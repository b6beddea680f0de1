"""``ChatCompletion``: the complete, non-streamed response (and what reassembly produces)."""

from __future__ import annotations

import msgspec

from ._common import ChoiceLogprobs, CompletionUsage, ReasoningText, StopReason
from ._fields import always, always_empty_list

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


class ChatCompletion(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    id: str = always("")
    object: str = always("chat.completion")
    created: int = always(0)
    model: str = always("")
    choices: list[Choice] = always_empty_list()
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    signature: str | None = None
    response_hash: str | None = None
