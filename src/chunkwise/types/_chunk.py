"""``ChatCompletionChunk``: one ``data:`` payload of a streamed chat completion."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from ._common import ChatCompletionFields, ChoiceLogprobs, ReasoningText, StopReason
from ._fields import always

__all__ = [
    "ChatCompletionChunk",
    "ChoiceDelta",
    "ChoiceDeltaFunctionCall",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChunkChoice",
]


class ChoiceDeltaToolCallFunction(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    #: Sent on a call's first fragment only.
    name: str | None = None
    #: A fragment of the JSON text of the arguments; fragments concatenate.
    arguments: str | None = None


class ChoiceDeltaToolCall(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """A fragment of one tool call. Fragments of the same call share ``index``.

    ``id`` and ``type`` are required by Atoma's schema but real servers send them on the first fragment only.
    """

    index: int = always(0)
    id: str | None = None
    type: str | None = None
    function: ChoiceDeltaToolCallFunction | None = None


class ChoiceDeltaFunctionCall(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """The legacy ``function_call`` delta, superseded by ``tool_calls``."""

    name: str | None = None
    arguments: str | None = None


class ChoiceDelta(msgspec.Struct, ReasoningText, kw_only=True, omit_defaults=True, gc=False):
    role: str | None = None
    content: str | None = None
    #: vLLM (before 0.10), DeepSeek and LiteLLM spell reasoning text this way ...
    reasoning_content: str | None = None
    #: ... while current vLLM and Ollama use ``reasoning``. Read either through :attr:`reasoning_text`.
    reasoning: str | None = None
    refusal: str | None = None
    if TYPE_CHECKING:
        tool_calls: list[ChoiceDeltaToolCall] | None = None
    else:
        # TGI has sent a single object instead of an array (huggingface/text-generation-inference#2794);
        # accept both and normalise in __post_init__ so readers always see a list.
        tool_calls: list[ChoiceDeltaToolCall] | ChoiceDeltaToolCall | None = None
    function_call: ChoiceDeltaFunctionCall | None = None

    def __post_init__(self) -> None:
        calls: Any = self.tool_calls
        if isinstance(calls, ChoiceDeltaToolCall):
            self.tool_calls = [calls]


class ChunkChoice(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    index: int = always(0)
    delta: ChoiceDelta = msgspec.field(default_factory=ChoiceDelta)
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None
    stop_reason: StopReason | None = None


class ChatCompletionChunk(ChatCompletionFields[ChunkChoice], kw_only=True):
    """One streamed piece of a chat completion.

    ``id`` and ``created`` are the same on every chunk of a stream. With
    ``stream_options.include_usage`` the last chunk has ``choices == []`` and carries ``usage``.
    """

    object: str = always("chat.completion.chunk")
