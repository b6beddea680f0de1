"""A Messages request as the chat request the engine serves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from ..types import (
    AssistantMessage,
    ChatCompletionRequest,
    FunctionCall,
    FunctionDefinition,
    Message,
    NamedToolChoice,
    NamedToolChoiceFunction,
    SystemMessage,
    Tool,
    ToolCall,
    ToolChoice,
    ToolMessage,
    UserMessage,
)
from ._errors import DialectRequestError
from ._messages_types import MessageParam, MessagesRequest, MessagesToolChoice
from ._writer import dialect_chat_request

__all__ = ["messages_request_to_chat"]

#: The chat API takes at most this many stop strings.
_MAX_STOP_SEQUENCES = 16

_json = msgspec.json.Encoder()


def messages_request_to_chat(request: MessagesRequest, *, count_only: bool = False) -> ChatCompletionRequest:
    """The chat request that answers ``request``, or :class:`DialectRequestError` naming the field it cannot serve.

    ``count_only`` is for ``/v1/messages/count_tokens``, whose body has no ``max_tokens``.
    """
    if request.max_tokens is None and not count_only:
        raise DialectRequestError("`max_tokens` is required", param="max_tokens")
    messages: list[Message] = []
    if request.system:
        messages.append(SystemMessage(content=_system_text(request.system)))
    for position, turn in enumerate(request.messages):
        _append_turn(messages, turn, f"messages[{position}]")
    if not messages:
        raise DialectRequestError("`messages` must hold at least one message", param="messages")
    stops = request.stop_sequences
    if stops:
        if len(stops) > _MAX_STOP_SEQUENCES:
            raise DialectRequestError(
                f"at most {_MAX_STOP_SEQUENCES} stop sequences are served", param="stop_sequences"
            )
        for position, stop in enumerate(stops):
            if not stop:
                raise DialectRequestError("a stop sequence must not be empty", param=f"stop_sequences[{position}]")
    choice = request.tool_choice
    return dialect_chat_request(
        request,
        messages,
        max_completion_tokens=request.max_tokens,
        stop=list(stops) if stops else None,
        top_k=request.top_k,
        tools=_tools(request),
        tool_choice=_tool_choice(choice),
        parallel_tool_calls=False if choice is not None and choice.disable_parallel_tool_use else None,
        user=request.metadata.user_id if request.metadata is not None else None,
    )


def _system_text(system: str | list[dict[str, Any]]) -> str:
    if isinstance(system, str):
        return system
    texts: list[str] = []
    for position, block in enumerate(system):
        if block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise DialectRequestError("`system` blocks must be text blocks", param=f"system[{position}]")
        texts.append(block["text"])
    return "\n\n".join(texts)


def _append_turn(messages: list[Message], turn: MessageParam, param: str) -> None:
    if isinstance(turn.content, str):
        messages.append(
            UserMessage(content=turn.content) if turn.role == "user" else AssistantMessage(content=turn.content)
        )
        return
    if turn.role == "assistant":
        messages.append(_assistant_turn(turn.content, f"{param}.content"))
        return
    # Tool results answer the previous assistant turn, so in chat they come first, as `tool` messages.
    texts: list[str] = []
    for kind, block, where in _typed_blocks(turn.content, f"{param}.content"):
        if kind == "text":
            texts.append(_block_text(block, where))
        elif kind == "tool_result":
            messages.append(_tool_result(block, where))
        else:
            raise _unsupported(kind, where)
    if texts:
        messages.append(UserMessage(content="\n\n".join(texts)))


def _assistant_turn(blocks: list[dict[str, Any]], param: str) -> AssistantMessage:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for kind, block, where in _typed_blocks(blocks, param):
        if kind == "text":
            texts.append(_block_text(block, where))
        elif kind == "tool_use":
            calls.append(_tool_use(block, where))
        elif kind == "thinking":
            thinking = block.get("thinking")
            if isinstance(thinking, str):
                reasoning.append(thinking)
        elif kind == "redacted_thinking":
            continue  # encrypted for Anthropic's models only; nothing here can read it
        else:
            raise _unsupported(kind, where)
    return AssistantMessage(
        content="".join(texts) if texts else None,
        reasoning_content="".join(reasoning) if reasoning else None,
        tool_calls=calls or None,
    )


def _typed_blocks(blocks: list[dict[str, Any]], param: str) -> Iterator[tuple[object, dict[str, Any], str]]:
    """Each content block with its ``type`` and the parameter path that errors about it name."""
    for position, block in enumerate(blocks):
        yield block.get("type"), block, f"{param}[{position}]"


def _block_text(block: dict[str, Any], param: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise DialectRequestError("a text block needs a string `text`", param=f"{param}.text")
    return text


def _tool_use(block: dict[str, Any], param: str) -> ToolCall:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not call_id:
        raise DialectRequestError("a tool_use block needs an `id`", param=f"{param}.id")
    if not isinstance(name, str) or not name:
        raise DialectRequestError("a tool_use block needs a `name`", param=f"{param}.name")
    if not isinstance(arguments, dict):
        raise DialectRequestError("a tool_use block's `input` must be an object", param=f"{param}.input")
    return ToolCall(id=call_id, function=FunctionCall(name=name, arguments=_json.encode(arguments).decode()))


def _tool_result(block: dict[str, Any], param: str) -> ToolMessage:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise DialectRequestError("a tool_result block needs a `tool_use_id`", param=f"{param}.tool_use_id")
    content = block.get("content", "")
    if isinstance(content, list):
        texts: list[str] = []
        for position, part in enumerate(content):
            where = f"{param}.content[{position}]"
            if not isinstance(part, dict) or part.get("type") != "text":
                raise _unsupported(part.get("type") if isinstance(part, dict) else None, where)
            texts.append(_block_text(part, where))
        content = "\n\n".join(texts)
    elif content is None:
        content = ""
    elif not isinstance(content, str):
        raise DialectRequestError("a tool_result's `content` must be a string or text blocks", param=f"{param}.content")
    return ToolMessage(content=content, tool_call_id=call_id)


def _unsupported(kind: object, param: str) -> DialectRequestError:
    if kind in ("image", "document"):
        return DialectRequestError(f"{kind} blocks are not supported: this model reads text only", param=param)
    return DialectRequestError(f"content blocks of type {kind!r} are not supported here", param=param)


def _tools(request: MessagesRequest) -> list[Tool] | None:
    if not request.tools:
        return None
    tools: list[Tool] = []
    for position, tool in enumerate(request.tools):
        if tool.type not in (None, "custom"):
            raise DialectRequestError(
                f"only client tools are served, not the server tool {tool.type!r}", param=f"tools[{position}].type"
            )
        if tool.input_schema is None:
            raise DialectRequestError("a tool needs an `input_schema`", param=f"tools[{position}].input_schema")
        tools.append(
            Tool(
                function=FunctionDefinition(name=tool.name, description=tool.description, parameters=tool.input_schema)
            )
        )
    return tools


def _tool_choice(choice: MessagesToolChoice | None) -> ToolChoice | None:
    if choice is None:
        return None
    if choice.type == "auto":
        return "auto"
    if choice.type == "any":
        return "required"
    if choice.type == "none":
        return "none"
    if not choice.name:
        raise DialectRequestError("`tool_choice` of type tool needs a `name`", param="tool_choice.name")
    return NamedToolChoice(function=NamedToolChoiceFunction(name=choice.name))
