"""Grammar-constrained output on the real engine: JSON modes, tool calls and multibyte text."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from chunkwise.accumulate import accumulate
from chunkwise.engine import InvalidRequestError, LlamaCppEngine
from chunkwise.engine._grammar import json_schema_grammar
from chunkwise.types import ChatCompletionChunk

from .support import chat, content_of, finish_reason, run_chat

pytestmark = [pytest.mark.engine, pytest.mark.anyio]

PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer"},
        "member": {"type": "boolean"},
        "role": {"type": "string", "enum": ["admin", "user"]},
    },
    "required": ["name", "age", "member", "role"],
}

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 16},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
ADD: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
SCHEMAS = {"get_weather": WEATHER["function"]["parameters"], "add": ADD["function"]["parameters"]}


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


async def test_json_object_output_parses(engine: LlamaCppEngine):
    chunks = await run_chat(
        engine,
        # Greedy, the model closes this object well within max_tokens: an answer cut short would prove nothing.
        chat(
            "Describe a cat as a JSON object with its name and age.",
            max_tokens=64,
            temperature=0,
            response_format={"type": "json_object"},
        ),
    )
    assert finish_reason(chunks) == "stop"
    assert isinstance(json.loads(content_of(chunks)), dict)


async def test_json_schema_output_matches_the_schema(engine: LlamaCppEngine):
    chunks = await run_chat(
        engine,
        chat("Invent a club member.", max_tokens=64, temperature=0.7, seed=3, response_format=schema_format(PERSON)),
    )
    assert finish_reason(chunks) == "stop"
    jsonschema.validate(json.loads(content_of(chunks)), PERSON)


async def test_emoji_and_cjk_split_across_tokens_arrive_intact(engine: LlamaCppEngine):
    text = "你好世界 🐉🔥 ok"
    chunks = await run_chat(
        engine,
        chat(
            "Say hello.",
            max_tokens=48,
            temperature=0,
            logprobs=True,
            response_format=schema_format({"type": "string", "enum": [text]}),
        ),
    )
    pieces = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices[0].delta.content]
    assert "".join(pieces) == json.dumps(text, ensure_ascii=False)
    assert all("\ufffd" not in piece for piece in pieces)
    token_bytes = [
        bytes(entry.bytes or [])
        for chunk in chunks
        if chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content or []
    ]
    assert b"".join(token_bytes) == json.dumps(text, ensure_ascii=False).encode()

    def complete_utf8(data: bytes) -> bool:
        try:
            data.decode()
        except UnicodeDecodeError:
            return False
        return True

    assert not all(complete_utf8(data) for data in token_bytes), "some token ended inside a code point"


def tool_calls(chunks: list[ChatCompletionChunk]) -> list[Any]:
    return [call for chunk in chunks for call in chunk.choices[0].delta.tool_calls or []]


def check_tool_call_stream(
    chunks: list[ChatCompletionChunk], allowed: set[str], index: int = 0
) -> tuple[str, dict[str, Any]]:
    fragments = tool_calls(chunks)
    assert fragments, "a tool call was streamed"
    first, rest = fragments[0], fragments[1:]
    assert first.id and first.id.startswith("call_")
    assert first.type == "function"
    assert first.function is not None and first.function.name in allowed
    for fragment in rest:
        assert fragment.index == 0
        assert fragment.id is None and fragment.type is None
        assert fragment.function is not None and fragment.function.name is None
        assert fragment.function.arguments
    assert content_of(chunks, index) == ""
    assert finish_reason(chunks, index) == "tool_calls"
    arguments_text = "".join(fragment.function.arguments or "" for fragment in fragments)
    arguments = json.loads(arguments_text)
    jsonschema.validate(arguments, SCHEMAS[first.function.name])

    message = accumulate(chunks).choices[0].message
    assert accumulate(chunks).choices[0].index == index
    assert message.tool_calls is not None and len(message.tool_calls) == 1
    assert message.tool_calls[0].function.arguments == arguments_text
    return first.function.name, arguments


async def test_tool_choice_required_streams_a_valid_call(engine: LlamaCppEngine):
    chunks = await run_chat(
        engine,
        chat(
            "What is the weather in Paris?", tools=[WEATHER, ADD], tool_choice="required", max_tokens=48, temperature=0
        ),
    )
    check_tool_call_stream(chunks, {"get_weather", "add"})


async def test_a_named_tool_choice_calls_that_tool(engine: LlamaCppEngine):
    named = {"type": "function", "function": {"name": "add"}}
    chunks = await run_chat(
        engine,
        chat("What is the weather in Paris?", tools=[WEATHER, ADD], tool_choice=named, max_tokens=48, temperature=0),
    )
    name, arguments = check_tool_call_stream(chunks, {"add"})
    assert name == "add" and set(arguments) == {"a", "b"}


async def test_n_tool_calls_each_get_their_own_stream(engine: LlamaCppEngine):
    chunks = await run_chat(
        engine,
        chat("Weather in Rome?", tools=[WEATHER], tool_choice="required", max_tokens=48, temperature=1.0, seed=2, n=2),
    )
    for index in (0, 1):
        own = [chunk for chunk in chunks if chunk.choices[0].index == index]
        check_tool_call_stream(own, {"get_weather"}, index)


async def test_auto_may_answer_in_plain_text(engine: LlamaCppEngine):
    (brace,) = engine.tokenize("{")
    chunks = await run_chat(
        engine,
        chat("Tell me a joke.", tools=[WEATHER], max_tokens=8, temperature=0, logit_bias={str(brace): -100}),
    )
    assert content_of(chunks)
    assert not tool_calls(chunks)
    assert finish_reason(chunks) in {"stop", "length"}


async def test_auto_may_call_a_tool(engine: LlamaCppEngine):
    (brace,) = engine.tokenize("{")
    chunks = await run_chat(
        engine,
        chat(
            "Weather in Oslo?",
            tools=[WEATHER],
            tool_choice="auto",
            max_tokens=64,
            temperature=0,
            logit_bias={str(brace): 30},  # makes "{" the first token; the grammar then holds the call's shape
        ),
    )
    check_tool_call_stream(chunks, {"get_weather"})


async def test_tool_choice_none_answers_in_text(engine: LlamaCppEngine):
    chunks = await run_chat(
        engine, chat("Weather in Oslo?", tools=[WEATHER], tool_choice="none", max_tokens=6, temperature=0)
    )
    assert not tool_calls(chunks)
    assert content_of(chunks)


async def test_a_call_cut_short_by_max_tokens_ends_with_length(engine: LlamaCppEngine):
    chunks = await run_chat(
        engine, chat("Weather?", tools=[WEATHER], tool_choice="required", max_tokens=14, temperature=0)
    )
    assert finish_reason(chunks) == "length"
    fragments = tool_calls(chunks)
    assert fragments and fragments[0].function is not None and fragments[0].function.name == "get_weather"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tool_choice": {"type": "function", "function": {"name": "missing"}}}, "tool_choice"),
        ({"tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
    ],
)
async def test_tool_requests_that_cannot_be_honoured(engine: LlamaCppEngine, fields, param):
    with pytest.raises(InvalidRequestError) as caught:
        engine.prepare_chat(chat(tools=[WEATHER], **fields), request_id="x", created=0)
    assert caught.value.param == param


def validate_formats(output: Any, schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator
    jsonschema.validate(output, schema, cls=validator, format_checker=validator.FORMAT_CHECKER)


@pytest.mark.parametrize(
    ("schema", "only"),
    [
        ({"type": "number", "minimum": 0.1, "maximum": 0.2}, None),
        ({"type": "number", "minimum": -0.2, "maximum": -0.1}, None),
        ({"type": "number", "exclusiveMinimum": 0.1, "exclusiveMaximum": 0.100002}, 0.100001),
        ({"type": "number", "minimum": 2.5, "exclusiveMaximum": 2.500001}, 2.5),
    ],
)
async def test_number_bounds_within_one_integer_are_satisfied(
    engine: LlamaCppEngine, schema: dict[str, Any], only: float | None
):
    request = chat("Pick a number.", n=3, temperature=1.0, seed=5, max_tokens=16, response_format=schema_format(schema))
    chunks = await run_chat(engine, request)
    for index in range(3):
        assert finish_reason(chunks, index) == "stop"
        value = json.loads(content_of(chunks, index))
        validate_formats(value, schema)
        assert only is None or value == only


@pytest.mark.parametrize("favoured", ["0", "0 2 9", "3 1", "1 9"])
async def test_dates_are_real_dates_even_when_the_model_pushes_for_zeros_and_big_days(
    engine: LlamaCppEngine, favoured: str
):
    # A strong bias makes the model pick these digits wherever the grammar allows them: year 0000, day 30 of
    # February and day 31 of a short month are what a loose grammar then writes.
    bias = {str(token): 40 for digit in favoured.split() for token in engine.tokenize(digit, parse_special=False)}
    schema = {"type": "array", "items": {"type": "string", "format": "date"}, "minItems": 4, "maxItems": 4}
    request = chat("Some dates.", max_tokens=64, logit_bias=bias, response_format=schema_format(schema))
    chunks = await run_chat(engine, request)
    assert finish_reason(chunks) == "stop"
    validate_formats(json.loads(content_of(chunks)), schema)


def test_integer_bounds_beyond_a_double_narrow_to_fifteen_digits():
    # A range of 300-digit integers made a grammar that every token had to walk through.
    vast = {"type": "integer", "minimum": -1e300, "maximum": 1e300}
    exact = {"type": "integer", "minimum": -(10**15 - 1), "maximum": 10**15 - 1}
    assert json_schema_grammar(vast) == json_schema_grammar(exact)
