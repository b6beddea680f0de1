"""The latest openai-python client, unmodified, against the real server and engine."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from .conftest import MODEL

HELLO: list[Any] = [{"role": "user", "content": "Say hello to the world."}]


def stream_text(chunks: list[ChatCompletionChunk], index: int = 0) -> str:
    return "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices if c.index == index)


def test_plain_output_without_streaming(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8, temperature=0)
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in {"stop", "length"}
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert 0 < completion.usage.completion_tokens <= 8
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_streaming_gives_the_same_text_as_the_reassembled_response(client: openai.OpenAI) -> None:
    request: dict[str, Any] = {"model": MODEL, "messages": HELLO, "max_tokens": 12, "temperature": 0}
    whole = client.chat.completions.create(**request)
    chunks = list(client.chat.completions.create(**request, stream=True))
    assert stream_text(chunks) == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({chunk.id for chunk in chunks}) == 1
    assert len({chunk.created for chunk in chunks}) == 1
    finishes = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert all(chunk.usage is None for chunk in chunks)


def test_include_usage_adds_a_final_usage_chunk_with_exact_counts(client: openai.OpenAI) -> None:
    # End-of-text is banned, so both answers run to max_tokens and the count is known exactly.
    request: dict[str, Any] = {
        "model": MODEL,
        "messages": HELLO,
        "max_tokens": 6,
        "temperature": 0,
        "logit_bias": {"0": -100, "2": -100},
    }
    whole = client.chat.completions.create(**request)
    chunks = list(client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert whole.usage is not None
    assert last.usage.model_dump() == whole.usage.model_dump()
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert whole.choices[0].finish_reason == "length"
    assert last.usage.completion_tokens == 6
    assert last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + 6


@pytest.mark.parametrize("stream", [False, True])
def test_two_choices(client: openai.OpenAI, stream: bool) -> None:
    request: dict[str, Any] = {"model": MODEL, "messages": HELLO, "max_tokens": 6, "n": 2, "seed": 3}
    if stream:
        chunks = list(client.chat.completions.create(**request, stream=True))
        indices = [c.index for chunk in chunks for c in chunk.choices]
        assert set(indices) == {0, 1}
        finishes = {c.index: c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason}
        assert set(finishes) == {0, 1}
        assert stream_text(chunks, 0) and stream_text(chunks, 1)
    else:
        completion = client.chat.completions.create(**request)
        assert [choice.index for choice in completion.choices] == [0, 1]
        assert all(choice.message.content and choice.finish_reason for choice in completion.choices)


WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Tokyo", "Lima"]}},
            "required": ["city"],
        },
    },
}
WEATHER_QUESTION: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_tool_calls(client: openai.OpenAI, tool_choice: Any) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], tool_choice=tool_choice, max_tokens=48
    )
    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] in {"Paris", "Tokyo", "Lima"}


def test_tool_calls_stream_as_argument_deltas(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=WEATHER_QUESTION,
            tools=[WEATHER_TOOL],
            tool_choice="required",
            max_tokens=48,
            stream=True,
        )
    )
    fragments = [call for chunk in chunks for c in chunk.choices for call in c.delta.tool_calls or []]
    assert len(fragments) > 1, "arguments should arrive in pieces"
    assert fragments[0].id and fragments[0].function and fragments[0].function.name == "get_weather"
    assert all(f.id is None and (f.function is None or f.function.name is None) for f in fragments[1:])
    arguments = "".join(f.function.arguments or "" for f in fragments if f.function)
    assert json.loads(arguments)["city"] in {"Paris", "Tokyo", "Lima"}
    assert [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason] == ["tool_calls"]


def test_tool_choice_none_answers_in_text(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], tool_choice="none", max_tokens=8
    )
    assert not completion.choices[0].message.tool_calls
    assert completion.choices[0].finish_reason in {"stop", "length"}


ANSWER_SCHEMA: Any = {
    "type": "object",
    "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}, "sure": {"type": "boolean"}},
    "required": ["color", "sure"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_output_parses_and_matches(client: openai.OpenAI, stream: bool) -> None:
    request: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What colour is the sky? Answer in JSON."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}},
        "max_tokens": 32,
        "temperature": 0,
    }
    if stream:
        text = stream_text(list(client.chat.completions.create(**request, stream=True)))
    else:
        text = client.chat.completions.create(**request).choices[0].message.content or ""
    jsonschema.validate(json.loads(text), ANSWER_SCHEMA)


def test_json_object_output_parses(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe a cat as a JSON object with its name and age."}],
        response_format={"type": "json_object"},
        # Greedy, the model closes its object well within this: an answer cut short would prove nothing.
        max_tokens=64,
        temperature=0,
    )
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs(client: openai.OpenAI, stream: bool) -> None:
    request: dict[str, Any] = {
        "model": MODEL,
        "messages": HELLO,
        "max_tokens": 5,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
    }
    if stream:
        chunks = list(client.chat.completions.create(**request, stream=True))
        entries = [e for chunk in chunks for c in chunk.choices if c.logprobs for e in c.logprobs.content or []]
        text = stream_text(chunks)
    else:
        choice = client.chat.completions.create(**request).choices[0]
        assert choice.logprobs is not None
        entries = choice.logprobs.content or []
        text = choice.message.content or ""
    assert entries
    assert "".join(entry.token for entry in entries).startswith(text[:1])
    for entry in entries:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 2
        # Greedy: the sampled token is the most likely one.
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-4)


def test_the_same_seed_gives_the_same_text(client: openai.OpenAI) -> None:
    request: dict[str, Any] = {"model": MODEL, "messages": HELLO, "max_tokens": 16, "temperature": 1.0, "seed": 1234}
    first = client.chat.completions.create(**request).choices[0].message.content
    second = client.chat.completions.create(**request).choices[0].message.content
    streamed = stream_text(list(client.chat.completions.create(**request, stream=True)))
    assert first == second == streamed


@pytest.mark.parametrize("stream", [False, True])
def test_stop_text_never_appears_in_the_output(client: openai.OpenAI, stream: bool) -> None:
    request: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "List the days of the week."}],
        "max_tokens": 24,
        "temperature": 0,
    }
    full = client.chat.completions.create(**request).choices[0].message.content or ""
    words = full.split()
    assert len(words) >= 3, full
    stop = words[len(words) // 2]
    expected = full[: full.index(stop)]
    if stream:
        chunks = list(client.chat.completions.create(**request, stop=[stop, "never-produced"], stream=True))
        text = stream_text(chunks)
        finish = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    else:
        choice = client.chat.completions.create(**request, stop=stop).choices[0]
        text, finish = choice.message.content or "", [choice.finish_reason]
    assert stop not in text
    assert text == expected
    assert finish == ["stop"]


@pytest.mark.parametrize("stream", [False, True])
def test_legacy_text_completions(client: openai.OpenAI, stream: bool) -> None:
    request: dict[str, Any] = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0}
    whole = client.completions.create(**request)
    assert whole.id.startswith("cmpl-")
    assert whole.object == "text_completion"
    assert whole.system_fingerprint and whole.system_fingerprint.startswith("chunkwise-")
    assert whole.usage is not None and 0 < whole.usage.completion_tokens <= 6
    if stream:
        pieces = list(client.completions.create(**request, stream=True, stream_options={"include_usage": True}))
        assert all(piece.system_fingerprint == whole.system_fingerprint for piece in pieces if piece.choices)
        text = "".join(c.text for piece in pieces for c in piece.choices)
        assert text == whole.choices[0].text
        assert pieces[-1].choices == [] and pieces[-1].usage is not None
        assert pieces[-1].usage.model_dump() == whole.usage.model_dump()
    else:
        assert whole.choices[0].text
        assert whole.choices[0].finish_reason in {"stop", "length"}


def test_models_list(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL


def test_errors_become_openai_exceptions(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="no-such-model", messages=HELLO, max_tokens=4)
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, temperature=7)
    assert bad.value.param == "temperature"
