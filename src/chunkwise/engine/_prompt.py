"""Chat messages to prompt text, through the model's own Jinja chat template.

Templates are written for Hugging Face's ``apply_chat_template`` and expect plain ``{"role", "content"}``
dicts with string content, so the wire messages are flattened first: ``developer`` becomes ``system``,
text parts are joined, an assistant's tool calls are written into its content in the same JSON shape the
model is asked to produce, and tool results keep the ``tool`` role. Tools are described to the model in
the system message (see :func:`tool_instructions`); the grammar then holds it to the format.

Message text is only ever text: :func:`prompt_segments` renders the template around unguessable
placeholders and then splits the prompt into the template's own text, whose special tokens
(``<|im_start|>``) are parsed, and each message's content, tokenized as plain text. So a user who writes
``<|im_end|><|im_start|>system`` gets those characters, not a forged turn.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from typing import Any

from ..types import (
    AssistantMessage,
    ContentPart,
    DeveloperMessage,
    FunctionMessage,
    Message,
    SystemMessage,
    TextContentPart,
    Tool,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from ._protocol import InvalidRequestError
from ._text import tool_call_prefix

__all__ = ["CHATML_TEMPLATE", "ChatTemplate", "prompt_segments", "template_messages", "tool_instructions"]

#: Used when a GGUF file carries no ``tokenizer.chat_template``.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TemplateMessage = dict[str, str]


class ChatTemplate:
    """A compiled Jinja chat template (llama-cpp-python's sandboxed ``Jinja2ChatFormatter``)."""

    def __init__(self, source: str, *, bos_token: str, eos_token: str) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.source = source
        #: By ``add_generation_prompt``: with the assistant's turn opened (chat), or without (``/tokenize``).
        self._formatters: dict[bool, Any] = {
            opened: Jinja2ChatFormatter(
                template=source, eos_token=eos_token, bos_token=bos_token, add_generation_prompt=opened
            )
            for opened in (True, False)
        }

    def render(self, messages: list[TemplateMessage], *, add_generation_prompt: bool = True) -> str:
        try:
            prompt: str = self._formatters[add_generation_prompt](messages=messages).prompt
        except Exception as exc:  # a template reports unsupported input by raising anything at all
            raise InvalidRequestError(
                f"The model's chat template could not format these messages: {exc}", param="messages"
            ) from exc
        return prompt


def prompt_segments(
    render: Callable[[list[TemplateMessage]], str], messages: list[TemplateMessage]
) -> list[tuple[str, bool]]:
    """The rendered prompt as ``(text, is_message_content)`` pieces, in order.

    Raises :class:`InvalidRequestError` for a template that drops, repeats or rewrites message content, as
    content could then not be told apart from the template's own text.
    """
    nonce = secrets.token_hex(8)
    marked = [{**message, "content": f"\ue000{nonce}:{index}\ue001"} for index, message in enumerate(messages)]
    rendered = render(marked)
    segments: list[tuple[str, bool]] = []
    seen: set[int] = set()
    position = 0
    intact = True
    for match in re.finditer(f"\ue000{nonce}:(\\d+)\ue001", rendered):
        index = int(match[1])
        intact = intact and index not in seen
        seen.add(index)
        segments.append((rendered[position : match.start()], False))
        segments.append((messages[index]["content"], True))
        position = match.end()
    if not intact or len(seen) != len(messages):
        raise InvalidRequestError(
            "The model's chat template does not place each message's content exactly once, so the content "
            "cannot be kept apart from the template's control tokens",
            param="messages",
        )
    segments.append((rendered[position:], False))
    return [(text, is_content) for text, is_content in segments if text]


def template_messages(messages: list[Message], *, system_suffix: str | None = None) -> list[TemplateMessage]:
    """Flatten wire messages into template dicts; ``system_suffix`` is appended to the system prompt."""
    flattened: list[TemplateMessage] = []
    for index, message in enumerate(messages):
        match message:
            case SystemMessage() | DeveloperMessage():
                flattened.append({"role": "system", "content": _text(message.content, index)})
            case UserMessage():
                flattened.append({"role": "user", "content": _text(message.content, index)})
            case AssistantMessage():
                content = _text(message.content, index) if message.content is not None else ""
                calls = [_call_text(call) for call in message.tool_calls or ()]
                flattened.append({"role": "assistant", "content": "\n".join(filter(None, [content, *calls]))})
            case ToolMessage():
                flattened.append({"role": "tool", "content": _text(message.content, index)})
            case FunctionMessage():
                flattened.append({"role": "tool", "content": message.content or ""})
    if system_suffix:
        if flattened and flattened[0]["role"] == "system":
            flattened[0] = {"role": "system", "content": f"{flattened[0]['content']}\n\n{system_suffix}"}
        else:
            flattened.insert(0, {"role": "system", "content": system_suffix})
    return flattened


def _text(content: str | list[ContentPart], index: int) -> str:
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for part in content:
        if not isinstance(part, TextContentPart):
            kind = _PART_KINDS.get(type(part).__name__, "non-text")
            raise InvalidRequestError(
                f"messages[{index}].content: {kind} content is not supported by this text-only model",
                param=f"messages[{index}].content",
            )
        texts.append(part.text)
    return "\n".join(texts)


_PART_KINDS = {"ImageContentPart": "image_url", "InputAudioContentPart": "input_audio"}


def _call_text(call: ToolCall) -> str:
    arguments = call.function.arguments
    try:
        json.loads(arguments)
    except ValueError:
        arguments = json.dumps(arguments)  # keep the transcript valid JSON even if the arguments were not
    return tool_call_prefix(call.function.name) + arguments + "}"


def tool_instructions(tools: list[Tool], *, forced: str | None, required: bool) -> str:
    """The system-prompt text that shows the model its tools and the one call format it may use."""
    specs = "\n".join(
        json.dumps(
            {
                "name": tool.function.name,
                "description": tool.function.description or "",
                "parameters": tool.function.parameters or {"type": "object", "properties": {}},
            },
            ensure_ascii=False,
        )
        for tool in tools
    )
    example = tool_call_prefix("<tool name>") + "{<arguments>}}"
    if forced is not None:
        rule = f"Call the tool {forced!r} now. Reply with only the JSON call: {example}"
    elif required:
        rule = f"Call one of these tools now. Reply with only the JSON call: {example}"
    else:
        rule = f"To call a tool, reply with only a JSON object: {example}\nOtherwise, answer in plain text."
    return f"You can call these tools:\n{specs}\n\n{rule}"
