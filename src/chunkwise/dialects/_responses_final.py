"""The whole answer at once: a ``ChatCompletion`` as a Responses ``response``, and back.

The stream translation (:mod:`._responses_stream`) uses the same naming, usage and ending rules, so a
streamed response reassembles to exactly what :func:`completion_to_response` gives for the same chunks.
"""

from __future__ import annotations

import msgspec

from ..types import (
    ChatCompletion,
    ChatCompletionMessage,
    Choice,
    CompletionTokensDetails,
    CompletionUsage,
    FunctionCall,
    PromptTokensDetails,
    ToolCall,
)
from ._responses_types import (
    IncompleteDetails,
    ItemStatus,
    ResponseFunctionCall,
    ResponseInputTokensDetails,
    ResponseObject,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseOutputTokensDetails,
    ResponseReasoningItem,
    ResponseReasoningText,
    ResponseUsage,
)

__all__ = ["completion_to_response", "response_id_of_item", "response_to_completion"]


def id_base(response_id: str) -> str:
    """What item ids are made from, so the same response always names its items the same way."""
    return response_id.removeprefix("resp_") or "0"


def message_item_id(base: str) -> str:
    return f"msg_{base}"


def reasoning_item_id(base: str) -> str:
    return f"rs_{base}"


def function_item_id(base: str, tool_index: int) -> str:
    return f"fc_{base}_{tool_index}"


def response_id_of_item(item_id: str) -> str | None:
    """The id of the response whose output holds ``item_id``, when the makers above made it; else None."""
    kind, _, base = item_id.partition("_")
    if kind == "fc":
        base = base.rpartition("_")[0]
    elif kind not in ("msg", "rs"):
        return None
    return f"resp_{base}" if base else None


def call_id_for(base: str, tool_index: int, chat_id: str) -> str:
    """The chat call's own id; a server that sent none gets one made from the response."""
    return chat_id or f"call_{base}_{tool_index}"


def ending(finish_reason: str | None) -> tuple[str, IncompleteDetails | None, ItemStatus]:
    """The response status, its ``incomplete_details``, and the status of every item, for a chat finish reason.

    A turn cut by the token limit (or a filter) is ``incomplete``, and so is every item in it: a tool call
    cut short is never presented as a finished call.
    """
    if finish_reason == "length":
        return "incomplete", IncompleteDetails(reason="max_output_tokens"), "incomplete"
    if finish_reason == "content_filter":
        return "incomplete", IncompleteDetails(reason="content_filter"), "incomplete"
    return "completed", None, "completed"


def usage_to_responses(usage: CompletionUsage) -> ResponseUsage:
    prompt_details = usage.prompt_tokens_details
    completion_details = usage.completion_tokens_details
    return ResponseUsage(
        input_tokens=usage.prompt_tokens,
        input_tokens_details=ResponseInputTokensDetails(
            cached_tokens=(prompt_details.cached_tokens or 0) if prompt_details is not None else 0
        ),
        output_tokens=usage.completion_tokens,
        output_tokens_details=ResponseOutputTokensDetails(
            reasoning_tokens=(completion_details.reasoning_tokens or 0) if completion_details is not None else 0
        ),
        total_tokens=usage.total_tokens,
    )


def usage_to_chat(usage: ResponseUsage) -> CompletionUsage:
    cached = usage.input_tokens_details.cached_tokens
    reasoning = usage.output_tokens_details.reasoning_tokens
    return CompletionUsage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached) if cached else None,
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning) if reasoning else None,
    )


def chat_finish_reason(response: ResponseObject, has_calls: bool) -> str:
    if response.status == "incomplete":
        details = response.incomplete_details
        return "content_filter" if details is not None and details.reason == "content_filter" else "length"
    return "tool_calls" if has_calls else "stop"


def completion_to_response(completion: ChatCompletion, template: ResponseObject) -> ResponseObject:
    """The ``response`` for the first choice of ``completion``; ``template`` (see :func:`new_response`) gives
    the id, the creation time and the echoed request fields."""
    choice = completion.choices[0] if completion.choices else Choice()
    message = choice.message
    base = id_base(template.id)
    status, incomplete, item_status = ending(choice.finish_reason)
    output: list[ResponseOutputItem] = []
    # Empty text is no item: OpenAI-style servers open every stream with `content: ""`.
    reasoning = message.reasoning_text
    if reasoning:
        output.append(
            ResponseReasoningItem(
                id=reasoning_item_id(base), content=[ResponseReasoningText(text=reasoning)], status=item_status
            )
        )
    if message.content or message.refusal:
        parts: list[ResponseOutputText | ResponseOutputRefusal] = []
        if message.content:
            parts.append(ResponseOutputText(text=message.content))
        if message.refusal:
            parts.append(ResponseOutputRefusal(refusal=message.refusal))
        output.append(ResponseOutputMessage(id=message_item_id(base), status=item_status, content=parts))
    for tool_index, call in enumerate(message.tool_calls or ()):
        output.append(
            ResponseFunctionCall(
                id=function_item_id(base, tool_index),
                call_id=call_id_for(base, tool_index, call.id),
                name=call.function.name,
                arguments=call.function.arguments,
                status=item_status,
            )
        )
    return msgspec.structs.replace(
        template,
        status=status,
        incomplete_details=incomplete,
        output=output,
        usage=usage_to_responses(completion.usage) if completion.usage is not None else None,
    )


def response_to_completion(response: ResponseObject) -> ChatCompletion:
    """The chat completion a ``response`` stands for (one choice), as a chat client would have received it."""
    texts: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for item in response.output:
        if isinstance(item, ResponseOutputMessage):
            for part in item.content:
                if isinstance(part, ResponseOutputText):
                    texts.append(part.text)
                else:
                    refusals.append(part.refusal)
        elif isinstance(item, ResponseFunctionCall):
            calls.append(ToolCall(id=item.call_id, function=FunctionCall(name=item.name, arguments=item.arguments)))
        else:
            reasoning.extend(part.text for part in item.content or ())
    message = ChatCompletionMessage(
        content="".join(texts) if texts else None,
        refusal="".join(refusals) if refusals else None,
        reasoning_content="".join(reasoning) if reasoning else None,
        tool_calls=calls or None,
    )
    return ChatCompletion(
        id=response.id,
        created=int(response.created_at),
        model=response.model,
        choices=[Choice(index=0, message=message, finish_reason=chat_finish_reason(response, bool(calls)))],
        usage=usage_to_chat(response.usage) if response.usage is not None else None,
    )
