"""A Responses request as the chat request the engine serves, and the ``response`` object that echoes it."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from ..types import (
    AssistantMessage,
    ChatCompletionRequest,
    ContentPart,
    DeveloperMessage,
    FunctionCall,
    FunctionDefinition,
    ImageContentPart,
    ImageURL,
    JSONSchemaSpec,
    Message,
    NamedToolChoice,
    NamedToolChoiceFunction,
    ResponseFormat,
    ResponseFormatJSONObject,
    ResponseFormatJSONSchema,
    SystemMessage,
    TextContentPart,
    Tool,
    ToolCall,
    ToolChoice,
    ToolMessage,
    UserMessage,
)
from ._errors import DialectRequestError
from ._responses_types import (
    FunctionCallOutputItem,
    InputContent,
    InputFile,
    InputImage,
    InputText,
    ResponseFunctionCall,
    ResponseInputMessage,
    ResponseObject,
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseReasoningItem,
    ResponsesRequest,
    ResponsesToolChoice,
)
from ._writer import dialect_chat_request

__all__ = ["new_response", "responses_request_to_chat"]

_MISSING = re.compile(r"^Object missing required field `([^`]+)`")

_ITEM_TYPES: dict[str, type[Any]] = {
    "message": ResponseInputMessage,
    "function_call": ResponseFunctionCall,
    "function_call_output": FunctionCallOutputItem,
    "reasoning": ResponseReasoningItem,
}


def responses_request_to_chat(request: ResponsesRequest) -> ChatCompletionRequest:
    """The chat request that answers ``request``, or :class:`DialectRequestError` naming the field it cannot serve.

    ``previous_response_id`` is the caller's to resolve (prepend the stored turns to ``input`` first);
    ``store``, ``metadata``, ``reasoning`` and ``truncation`` change nothing the engine does.
    """
    messages: list[Message] = []
    if request.instructions:
        messages.append(SystemMessage(content=request.instructions))
    if isinstance(request.input, str):
        messages.append(UserMessage(content=request.input))
    elif request.input is not None:
        _append_items(messages, request.input)
    if not messages:
        raise DialectRequestError("`input` must hold at least one item", param="input")
    return dialect_chat_request(
        request,
        messages,
        max_completion_tokens=request.max_output_tokens,
        response_format=_response_format(request),
        tools=_tools(request),
        tool_choice=_tool_choice(request.tool_choice),
        parallel_tool_calls=request.parallel_tool_calls,
        user=request.user,
    )


def new_response(request: ResponsesRequest, *, response_id: str, created_at: int, model: str) -> ResponseObject:
    """The ``in_progress`` response that echoes ``request``, as ``response.created`` shows it."""
    return ResponseObject(
        id=response_id,
        created_at=created_at,
        status="in_progress",
        instructions=request.instructions,
        max_output_tokens=request.max_output_tokens,
        model=model,
        parallel_tool_calls=request.parallel_tool_calls is not False,
        previous_response_id=request.previous_response_id,
        reasoning=request.reasoning,
        store=request.store,
        temperature=request.temperature,
        text=request.text,
        tool_choice=request.tool_choice if request.tool_choice is not None else "auto",
        tools=list(request.tools or ()),
        top_p=request.top_p,
        truncation=request.truncation,
        user=request.user,
        metadata=request.metadata,
    )


def _append_items(messages: list[Message], items: list[Any]) -> None:
    reasoning: list[str] = []
    for position, raw in enumerate(items):
        param = f"input[{position}]"
        item = _read_item(raw, param)
        if isinstance(item, ResponseInputMessage):
            _append_message(messages, item, param, reasoning)
        elif isinstance(item, ResponseFunctionCall):
            call = ToolCall(id=item.call_id, function=FunctionCall(name=item.name, arguments=item.arguments))
            last = messages[-1] if messages else None
            if isinstance(last, AssistantMessage):
                last.tool_calls = [*(last.tool_calls or ()), call]
            else:
                messages.append(AssistantMessage(tool_calls=[call], reasoning_content=_take(reasoning)))
        elif isinstance(item, FunctionCallOutputItem):
            output = item.output if isinstance(item.output, str) else _text_of(item.output, f"{param}.output")
            messages.append(ToolMessage(content=output, tool_call_id=item.call_id))
        else:  # a reasoning item replayed: its text rides on the assistant turn that follows
            reasoning.extend(part.text for part in item.content or ())


def _read_item(
    raw: Any, param: str
) -> ResponseInputMessage | ResponseFunctionCall | FunctionCallOutputItem | ResponseReasoningItem:
    if not isinstance(raw, dict):
        raise DialectRequestError("an input item must be an object", param=param)
    kind = raw.get("type", "message")
    item_type = _ITEM_TYPES.get(kind) if isinstance(kind, str) else None
    if item_type is None:
        if kind == "item_reference":
            raise DialectRequestError("item references are not served; send the item itself", param=f"{param}.type")
        raise DialectRequestError(f"input items of type {kind!r} are not supported", param=f"{param}.type")
    try:
        item: Any = msgspec.convert(raw, item_type)
    except msgspec.ValidationError as exc:
        message, path = _located(exc, param)
        raise DialectRequestError(message, param=path) from None
    if isinstance(item, ResponseFunctionCall) and not (item.call_id and item.name):
        raise DialectRequestError("a function_call item needs `call_id` and `name`", param=param)
    return item  # type: ignore[no-any-return]


def _located(exc: msgspec.ValidationError, param: str) -> tuple[str, str]:
    # msgspec ends its message with "- at `$.path`"; rebase that path onto the item's place in `input`,
    # and name a missing field itself ("Object missing required field `call_id`").
    message, _, path = str(exc).partition(" - at `$")
    path = param + path.rstrip("`")
    missing = _MISSING.match(message)
    if missing is not None:
        path = f"{path}.{missing[1]}"
    return message, path


def _append_message(messages: list[Message], item: ResponseInputMessage, param: str, reasoning: list[str]) -> None:
    role = item.role
    if role == "assistant":
        text = item.content if isinstance(item.content, str) else _text_of(item.content, f"{param}.content")
        messages.append(AssistantMessage(content=text, reasoning_content=_take(reasoning)))
        return
    if role == "user":
        content: str | list[ContentPart] = (
            item.content if isinstance(item.content, str) else _user_parts(item.content, f"{param}.content")
        )
        messages.append(UserMessage(content=content))
        return
    text = item.content if isinstance(item.content, str) else _text_of(item.content, f"{param}.content")
    messages.append(SystemMessage(content=text) if role == "system" else DeveloperMessage(content=text))


def _user_parts(parts: list[InputContent], param: str) -> list[ContentPart]:
    result: list[ContentPart] = []
    for position, part in enumerate(parts):
        if isinstance(part, InputText):
            result.append(TextContentPart(text=part.text))
        elif isinstance(part, InputImage):
            if not part.image_url:
                raise DialectRequestError(
                    "images are read from `image_url` only (file ids are not served)", param=f"{param}[{position}]"
                )
            result.append(ImageContentPart(image_url=ImageURL(url=part.image_url, detail=part.detail)))
        else:
            result.append(TextContentPart(text=_part_text(part, f"{param}[{position}]")))
    return result


def _text_of(parts: list[InputContent], param: str) -> str:
    return "".join(_part_text(part, f"{param}[{position}]") for position, part in enumerate(parts))


def _part_text(part: InputContent, param: str) -> str:
    if isinstance(part, InputText | ResponseOutputText):
        return part.text
    if isinstance(part, ResponseOutputRefusal):
        return part.refusal
    kind = "input_file" if isinstance(part, InputFile) else "input_image"
    raise DialectRequestError(f"`{kind}` content is not supported here", param=param)


def _take(reasoning: list[str]) -> str | None:
    if not reasoning:
        return None
    text = "".join(reasoning)
    reasoning.clear()
    return text


def _tools(request: ResponsesRequest) -> list[Tool] | None:
    if not request.tools:
        return None
    tools: list[Tool] = []
    for position, tool in enumerate(request.tools):
        if tool.type != "function":
            raise DialectRequestError(
                f"only function tools are served, not {tool.type!r}", param=f"tools[{position}].type"
            )
        if not tool.name:
            raise DialectRequestError("a function tool needs a `name`", param=f"tools[{position}].name")
        tools.append(
            Tool(
                function=FunctionDefinition(
                    name=tool.name, description=tool.description, parameters=tool.parameters, strict=tool.strict
                )
            )
        )
    return tools


def _tool_choice(choice: str | ResponsesToolChoice | None) -> ToolChoice | None:
    if choice is None or isinstance(choice, str):
        return choice  # type: ignore[return-value]
    if choice.type != "function" or not choice.name:
        raise DialectRequestError(
            "`tool_choice` must be none, auto, required or {type: function, name}", param="tool_choice"
        )
    return NamedToolChoice(function=NamedToolChoiceFunction(name=choice.name))


def _response_format(request: ResponsesRequest) -> ResponseFormat | None:
    text_format = request.text.format if request.text is not None else None
    if text_format is None or text_format.type == "text":
        return None
    if text_format.type == "json_object":
        return ResponseFormatJSONObject()
    if text_format.type == "json_schema":
        if not text_format.name or text_format.schema is None:
            raise DialectRequestError("a json_schema format needs `name` and `schema`", param="text.format")
        return ResponseFormatJSONSchema(
            json_schema=JSONSchemaSpec(
                name=text_format.name,
                description=text_format.description,
                schema=text_format.schema,
                strict=text_format.strict,
            )
        )
    raise DialectRequestError(f"unknown text format {text_format.type!r}", param="text.format.type")
