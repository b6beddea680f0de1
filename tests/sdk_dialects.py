"""The official SDKs on the Responses API and Anthropic Messages, unmodified: checks that the server's and the
gateway's tests both run, each against its own real uvicorn app (the gateway's in front of a real server)."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pydantic
import pytest

WEATHER_PARAMETERS: Any = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Paris", "Tokyo", "Lima"]}},
    "required": ["city"],
}
RESPONSES_WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": WEATHER_PARAMETERS,
}
MESSAGES_WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": WEATHER_PARAMETERS,
}
WEATHER_QUESTION = "What is the weather in Paris?"
#: Greedy decoding on Messages. This anthropic SDK's signatures have no sampling fields any more; the API
#: still takes them, so they go in the body as they are.
GREEDY: Any = {"temperature": 0, "top_k": 1}


class Pet(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=10)
    legs: int = pydantic.Field(ge=0, le=8)


# --- the Responses API (openai-python) ------------------------------------------------------------------


def responses_stream_events_follow_the_grammar(client: openai.OpenAI, model: str) -> None:
    events = list(
        client.responses.create(model=model, input="Say hello.", max_output_tokens=8, temperature=0, stream=True)
    )
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] in ("response.completed", "response.incomplete")
    numbers = [event.sequence_number for event in events]
    assert numbers == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas and final.output_text == deltas
    assert final.usage is not None and 0 < final.usage.output_tokens <= 8
    # The whole answer is the same object the stream ends with.
    whole = client.responses.create(model=model, input="Say hello.", max_output_tokens=8, temperature=0)
    assert whole.output_text == final.output_text
    assert whole.status == final.status


def responses_stream_helper_gives_the_final_response(client: openai.OpenAI, model: str) -> None:
    with client.responses.stream(
        model=model, input="Name a colour.", instructions="Answer in one word.", max_output_tokens=24, temperature=0
    ) as stream:
        deltas = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        # The helper accepts only `response.completed` (greedy decoding of this prompt ends well within the limit).
        final = stream.get_final_response()
    assert final.output_text == deltas
    assert final.instructions == "Answer in one word."
    assert final.status == "completed"


def responses_parse_fills_a_pydantic_model(client: openai.OpenAI, model: str) -> None:
    response = client.responses.parse(
        model=model, input="Describe a cat as JSON.", text_format=Pet, max_output_tokens=60, temperature=0
    )
    assert response.status == "completed"
    parsed = response.output_parsed
    assert isinstance(parsed, Pet)
    assert Pet.model_validate_json(response.output_text) == parsed


def responses_function_tool_round_trip(client: openai.OpenAI, model: str) -> None:
    first = client.responses.create(
        model=model,
        input=WEATHER_QUESTION,
        tools=[RESPONSES_WEATHER_TOOL],
        tool_choice="required",
        parallel_tool_calls=False,
        max_output_tokens=48,
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].status == "completed"
    assert calls[0].arguments and calls[0].call_id
    follow_up: list[Any] = [
        {"role": "user", "content": WEATHER_QUESTION},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"sky": "sunny"}'},
    ]
    second = client.responses.create(
        model=model, input=follow_up, tools=[RESPONSES_WEATHER_TOOL], tool_choice="none", max_output_tokens=12
    )
    assert second.status in ("completed", "incomplete")
    assert second.output_text
    assert not [item for item in second.output if item.type == "function_call"]


def responses_previous_response_id_continues_the_conversation(client: openai.OpenAI, model: str) -> None:
    first = client.responses.create(model=model, input="My name is Ada.", max_output_tokens=6, temperature=0)
    second = client.responses.create(
        model=model, input="What is my name?", previous_response_id=first.id, max_output_tokens=6, temperature=0
    )
    assert second.previous_response_id == first.id
    assert second.usage is not None and first.usage is not None
    # The stored turn (question and answer) was put before the new input.
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert client.responses.retrieve(first.id).output_text == first.output_text
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=model, input="Hi", previous_response_id=first.id, max_output_tokens=2)
    # A response made with store=false is not kept.
    unstored = client.responses.create(model=model, input="Hi", store=False, max_output_tokens=2)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def responses_tool_call_cut_by_the_limit_is_incomplete(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(
        model=model, input=WEATHER_QUESTION, tools=[RESPONSES_WEATHER_TOOL], tool_choice="required", max_output_tokens=3
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert all(item.status == "incomplete" for item in response.output if item.type == "function_call")


def responses_bad_input_is_a_400_naming_the_field(client: openai.OpenAI, model: str) -> None:
    # An item type that this server does not serve (a computer-use tool's output).
    unserved: Any = [{"type": "computer_call_output", "call_id": "x", "output": {}}]
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model=model, input=unserved, max_output_tokens=2)
    assert raised.value.body["param"] == "input[0].type"  # type: ignore[index]
    # A reference to an item that no stored response holds is, as on OpenAI, a 404.
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model=model, input=[{"type": "item_reference", "id": "x"}], max_output_tokens=2)
    assert missing.value.body["param"] == "input[0].id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="Hi", max_output_tokens=2)


RESPONSES_CHECKS = [
    responses_stream_events_follow_the_grammar,
    responses_stream_helper_gives_the_final_response,
    responses_parse_fills_a_pydantic_model,
    responses_function_tool_round_trip,
    responses_previous_response_id_continues_the_conversation,
    responses_tool_call_cut_by_the_limit_is_incomplete,
    responses_bad_input_is_a_400_naming_the_field,
]


# --- Anthropic Messages (the anthropic SDK) -------------------------------------------------------------


def messages_stream_gives_text_and_the_final_message(client: anthropic.Anthropic, model: str) -> None:
    with client.messages.stream(
        model=model,
        max_tokens=10,
        system="Answer briefly.",
        messages=[{"role": "user", "content": "Say hello."}],
        extra_body=GREEDY,
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text
    assert [block.type for block in final.content] == ["text"]
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.input_tokens > 0 and 0 < final.usage.output_tokens <= 10
    whole = client.messages.create(
        model=model,
        max_tokens=10,
        system="Answer briefly.",
        messages=[{"role": "user", "content": "Say hello."}],
        extra_body=GREEDY,
    )
    assert whole.content[0].text == text  # type: ignore[union-attr]
    assert whole.usage.input_tokens == final.usage.input_tokens


def messages_tool_use_round_trip(client: anthropic.Anthropic, model: str) -> None:
    question: Any = {"role": "user", "content": WEATHER_QUESTION}
    first = client.messages.create(
        model=model, max_tokens=48, messages=[question], tools=[MESSAGES_WEATHER_TOOL], tool_choice={"type": "any"}
    )
    assert first.stop_reason == "tool_use"
    uses = [block for block in first.content if block.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather"
    assert uses[0].input["city"] in ("Paris", "Tokyo", "Lima")
    result: Any = {"type": "tool_result", "tool_use_id": uses[0].id, "content": "sunny"}
    second = client.messages.create(
        model=model,
        max_tokens=12,
        messages=[question, {"role": "assistant", "content": first.content}, {"role": "user", "content": [result]}],
        tools=[MESSAGES_WEATHER_TOOL],
        tool_choice={"type": "none"},
    )
    assert second.stop_reason in ("end_turn", "max_tokens")
    assert [block.type for block in second.content] == ["text"]


def messages_count_tokens_matches_the_message(client: anthropic.Anthropic, model: str) -> None:
    messages: Any = [{"role": "user", "content": "Count me."}]
    counted = client.messages.count_tokens(model=model, messages=messages, system="Be brief.")
    made = client.messages.create(model=model, max_tokens=1, messages=messages, system="Be brief.")
    assert counted.input_tokens == made.usage.input_tokens > 0


def messages_errors_are_typed(client: anthropic.Anthropic, model: str) -> None:
    hello: Any = [{"role": "user", "content": "Hi"}]
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", max_tokens=2, messages=hello)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    image: Any = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model=model, max_tokens=2, messages=[{"role": "user", "content": [image]}])
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "image" in refused.value.body["error"]["message"]  # type: ignore[index]


def messages_tool_use_cut_by_max_tokens_ends_with_max_tokens(client: anthropic.Anthropic, model: str) -> None:
    with client.messages.stream(
        model=model,
        max_tokens=3,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=[MESSAGES_WEATHER_TOOL],
        tool_choice={"type": "any"},
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens"


def messages_stop_sequence_is_reported(client: anthropic.Anthropic, model: str) -> None:
    hello: Any = [{"role": "user", "content": "Count from 1 to 9, separated by spaces."}]
    plain = client.messages.create(model=model, max_tokens=20, messages=hello, extra_body=GREEDY)
    text = plain.content[0].text  # type: ignore[union-attr]
    assert len(text) > 4
    stop = text[2:4]
    stopped = client.messages.create(
        model=model, max_tokens=20, messages=hello, extra_body=GREEDY, stop_sequences=[stop]
    )
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == stop


MESSAGES_CHECKS = [
    messages_stream_gives_text_and_the_final_message,
    messages_tool_use_round_trip,
    messages_count_tokens_matches_the_message,
    messages_errors_are_typed,
    messages_tool_use_cut_by_max_tokens_ends_with_max_tokens,
    messages_stop_sequence_is_reported,
]
