"""Request translation: Responses and Messages bodies, as clients send them, become the engine's chat request."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from chunkwise.dialects import (
    DialectRequestError,
    MessagesRequest,
    ResponsesRequest,
    messages_request_to_chat,
    new_response,
    responses_request_to_chat,
)
from chunkwise.types import (
    AssistantMessage,
    ChatCompletionRequest,
    NamedToolChoice,
    ResponseFormatJSONObject,
    ResponseFormatJSONSchema,
    SystemMessage,
    TextContentPart,
    ToolMessage,
    UserMessage,
)


def responses(body: dict[str, Any]) -> ChatCompletionRequest:
    return responses_request_to_chat(msgspec.convert({"model": "m", **body}, ResponsesRequest))


def messages(body: dict[str, Any]) -> ChatCompletionRequest:
    return messages_request_to_chat(msgspec.convert({"model": "m", "max_tokens": 64, **body}, MessagesRequest))


def chat_json(request: ChatCompletionRequest) -> Any:
    """What the engine is sent, through the chat type's own validation (a translated request must pass it)."""
    data = msgspec.json.encode(request)
    msgspec.json.decode(data, type=ChatCompletionRequest)
    return json.loads(data)


# --- Responses ----------------------------------------------------------------------------------------


def test_responses_string_input_with_instructions_and_sampling() -> None:
    request = responses(
        {
            "input": "Tell me a joke",
            "instructions": "Be brief.",
            "max_output_tokens": 40,
            "temperature": 0.5,
            "top_p": 0.9,
            "stream": True,
            "store": False,
            "metadata": {"k": "v"},
        }
    )
    assert chat_json(request) == {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a joke"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.5,
        "top_p": 0.9,
        "max_completion_tokens": 40,
    }


def test_responses_items_become_a_chat_conversation() -> None:
    request = responses(
        {
            "input": [
                {"role": "developer", "content": "Use tools."},
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Weather in Paris "},
                        {"type": "input_text", "text": "and Rome?"},
                    ],
                },
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [],
                    "content": [{"type": "reasoning_text", "text": "two calls"}],
                },
                {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city":"Paris"}'},
                {"type": "function_call", "call_id": "call_2", "name": "weather", "arguments": '{"city":"Rome"}'},
                {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
                {
                    "type": "function_call_output",
                    "call_id": "call_2",
                    "output": [{"type": "input_text", "text": "21C"}],
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "id": "msg_1",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "Paris 18C, Rome 21C.", "annotations": []}],
                },
                {"role": "user", "content": "Thanks"},
            ],
        }
    )
    assert chat_json(request)["messages"] == [
        {"role": "developer", "content": "Use tools."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Weather in Paris "}, {"type": "text", "text": "and Rome?"}],
        },
        {
            "role": "assistant",
            "reasoning_content": "two calls",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
            ],
        },
        {"role": "tool", "content": "18C", "tool_call_id": "call_1"},
        {"role": "tool", "content": "21C", "tool_call_id": "call_2"},
        {"role": "assistant", "content": "Paris 18C, Rome 21C."},
        {"role": "user", "content": "Thanks"},
    ]


def test_responses_tools_choice_and_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    request = responses(
        {
            "input": "x",
            "tools": [{"type": "function", "name": "f", "description": "d", "parameters": schema, "strict": True}],
            "tool_choice": {"type": "function", "name": "f"},
            "parallel_tool_calls": False,
            "text": {"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
        }
    )
    body = chat_json(request)
    assert body["tools"] == [
        {"type": "function", "function": {"name": "f", "description": "d", "parameters": schema, "strict": True}}
    ]
    assert isinstance(request.tool_choice, NamedToolChoice) and request.tool_choice.function.name == "f"
    assert body["parallel_tool_calls"] is False
    assert isinstance(request.response_format, ResponseFormatJSONSchema)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }
    assert isinstance(
        responses({"input": "x", "text": {"format": {"type": "json_object"}}}).response_format, ResponseFormatJSONObject
    )
    assert responses({"input": "x", "text": {"format": {"type": "text"}}}).response_format is None
    assert responses({"input": "x", "tool_choice": "required"}).tool_choice == "required"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": []}, "input"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": [{"type": "web_search_call", "id": "ws"}]}, "input[0].type"),
        ({"input": ["just a string"]}, "input[0]"),
        ({"input": [{"role": "captain", "content": "x"}]}, "input[0].role"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0]"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}, "input[0].content[0]"),
        ({"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]}, "input[0]"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"input": "x", "tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format"),
        ({"input": "x", "text": {"format": {"type": "grammar"}}}, "text.format.type"),
    ],
)
def test_responses_requests_the_engine_cannot_serve_name_their_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(DialectRequestError) as raised:
        responses(body)
    assert raised.value.param == param
    assert raised.value.message


def test_responses_image_url_becomes_a_chat_image_part() -> None:
    request = responses(
        {
            "input": [
                {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]}
            ]
        }
    )
    assert chat_json(request)["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}
    ]


def test_new_response_echoes_the_request() -> None:
    request = msgspec.convert(
        {
            "model": "m",
            "input": "x",
            "instructions": "i",
            "temperature": 0.2,
            "parallel_tool_calls": False,
            "tools": [{"type": "function", "name": "f", "parameters": {}}],
            "tool_choice": "none",
            "store": True,
        },
        ResponsesRequest,
    )
    response = new_response(request, response_id="resp_1", created_at=5, model="served")
    assert (response.id, response.created_at, response.model, response.status) == ("resp_1", 5, "served", "in_progress")
    assert (response.instructions, response.temperature, response.parallel_tool_calls) == ("i", 0.2, False)
    assert (response.tool_choice, [tool.name for tool in response.tools], response.store) == ("none", ["f"], True)
    assert response.output == [] and response.usage is None


# --- Messages -----------------------------------------------------------------------------------------


def test_messages_system_blocks_tools_and_sampling() -> None:
    request = messages(
        {
            "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in French."}],
            "messages": [{"role": "user", "content": "Hi"}],
            "stop_sequences": ["\n\nHuman:"],
            "temperature": 0.3,
            "top_p": 0.8,
            "top_k": 20,
            "metadata": {"user_id": "u-1"},
            "stream": True,
            "tools": [{"name": "get_weather", "description": "w", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        }
    )
    assert chat_json(request) == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are terse.\n\nAnswer in French."},
            {"role": "user", "content": "Hi"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.3,
        "top_p": 0.8,
        "stop": ["\n\nHuman:"],
        "max_completion_tokens": 64,
        "top_k": 20,
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "description": "w", "parameters": {"type": "object"}},
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "user": "u-1",
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [({"type": "auto"}, "auto"), ({"type": "any"}, "required"), ({"type": "none"}, "none")],
)
def test_messages_tool_choice(choice: dict[str, Any], expected: str) -> None:
    assert messages({"messages": [{"role": "user", "content": "x"}], "tool_choice": choice}).tool_choice == expected


def test_messages_named_tool_choice() -> None:
    request = messages({"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "tool", "name": "f"}})
    assert isinstance(request.tool_choice, NamedToolChoice) and request.tool_choice.function.name == "f"


def test_messages_tool_use_round_becomes_chat_tool_calls_and_tool_messages() -> None:
    request = messages(
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "need the tool", "signature": "sig"},
                        {"type": "redacted_thinking", "data": "opaque"},
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                        {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_2",
                            "content": [{"type": "text", "text": "21C"}],
                            "is_error": False,
                        },
                        {"type": "text", "text": "And tomorrow?"},
                    ],
                },
            ]
        }
    )
    chat = request.messages
    assert isinstance(chat[0], UserMessage) and chat[0].content == "Weather?"
    assistant = chat[1]
    assert isinstance(assistant, AssistantMessage)
    assert (assistant.content, assistant.reasoning_content) == ("Checking.", "need the tool")
    assert [
        (call.id, call.function.name, json.loads(call.function.arguments)) for call in assistant.tool_calls or []
    ] == [
        ("toolu_1", "weather", {"city": "Paris"}),
        ("toolu_2", "weather", {"city": "Rome"}),
    ]
    assert [(m.tool_call_id, m.content) for m in chat[2:4] if isinstance(m, ToolMessage)] == [
        ("toolu_1", "18C"),
        ("toolu_2", "21C"),
    ]
    assert isinstance(chat[4], UserMessage) and chat[4].content == "And tomorrow?"
    chat_json(request)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
                        ],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, "messages[0].content[0]"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {}}]}
                        ],
                    }
                ]
            },
            "messages[0].content[0].content[0]",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}, "messages[0].content[0].tool_use_id"),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}]},
            "messages[0].content[0].id",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": [1]}]}
                ]
            },
            "messages[0].content[0].input",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "system": [{"type": "image"}]}, "system[0]"),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "web_search", "type": "web_search_20250305"}],
            },
            "tools[0].type",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"name": "f"}]}, "tools[0].input_schema"),
        ({"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"messages": [{"role": "user", "content": "x"}], "stop_sequences": [""]}, "stop_sequences[0]"),
        ({"messages": [{"role": "user", "content": "x"}], "stop_sequences": ["s"] * 17}, "stop_sequences"),
    ],
)
def test_messages_requests_the_engine_cannot_serve_name_their_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(DialectRequestError) as raised:
        messages(body)
    assert raised.value.param == param


def test_messages_without_max_tokens_is_refused_except_for_counting() -> None:
    request = msgspec.convert({"model": "m", "messages": [{"role": "user", "content": "x"}]}, MessagesRequest)
    with pytest.raises(DialectRequestError) as raised:
        messages_request_to_chat(request)
    assert raised.value.param == "max_tokens"
    counted = messages_request_to_chat(request, count_only=True)
    assert isinstance(counted.messages[0], UserMessage) and counted.max_completion_tokens is None


def test_dialect_request_error_is_a_chunkwise_error_and_a_value_error() -> None:
    from chunkwise import ChunkwiseError

    error = DialectRequestError("bad", param="x")
    assert isinstance(error, ChunkwiseError) and isinstance(error, ValueError)
    assert str(error) == "bad"


def test_system_only_content_string_user_turn() -> None:
    request = messages(
        {"system": "s", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}
    )
    assert [type(m) for m in request.messages] == [SystemMessage, UserMessage, AssistantMessage]
    assert not isinstance(request.messages[1].content, list) or isinstance(
        request.messages[1].content[0], TextContentPart
    )
