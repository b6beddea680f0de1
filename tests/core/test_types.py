"""Wire types: tolerant decoding, lossless re-encoding, unset fields left out, request validation."""

from __future__ import annotations

import json

import msgspec
import pytest

from chunkwise.types import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    CompletionUsage,
    DeveloperMessage,
    ErrorDetail,
    ErrorResponse,
    ImageContentPart,
    Model,
    ModelList,
    NamedToolChoice,
    ResponseFormatJSONSchema,
    SystemMessage,
    TextContentPart,
    ToolMessage,
    UserMessage,
    chunk_decoder,
    completion_decoder,
    encode,
)

# The seed document's example (atoma-sdk TypeScript), translated to wire snake_case.
SEED_CHUNK = {
    "choices": [{"delta": {"content": "Hello", "role": "assistant"}, "finish_reason": "stop", "index": 0}],
    "created": 1677652288,
    "id": "chatcmpl-123",
    "model": "meta-llama/Llama-3.3-70B-Instruct",
}


def roundtrip(value: msgspec.Struct) -> dict[str, object]:
    result: dict[str, object] = json.loads(encode(value))
    return result


def test_seed_example_decodes_and_reencodes_losslessly() -> None:
    chunk = chunk_decoder.decode(json.dumps(SEED_CHUNK))
    assert chunk.id == "chatcmpl-123"
    assert chunk.choices[0].delta.content == "Hello"
    assert chunk.choices[0].finish_reason == "stop"
    encoded = roundtrip(chunk)
    # Everything the seed carried comes back unchanged; the only addition is the `object` the wire requires.
    assert encoded == {**SEED_CHUNK, "object": "chat.completion.chunk"}
    assert chunk_decoder.decode(encode(chunk)) == chunk


def test_encoding_omits_unset_fields_but_keeps_required_ones() -> None:
    chunk = ChatCompletionChunk(id="c", created=1, model="m", choices=[])
    assert roundtrip(chunk) == {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []}
    usage = CompletionUsage(prompt_tokens=0, completion_tokens=0, total_tokens=0)
    assert roundtrip(usage) == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_unknown_fields_are_ignored_everywhere() -> None:
    raw = {
        **SEED_CHUNK,
        "obfuscation": "xyz",
        "choices": [{"index": 0, "delta": {"content": "a", "annotations": []}, "matched_stop": 3, "extra": {}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "cost": 0.1},
    }
    chunk = chunk_decoder.decode(json.dumps(raw))
    assert chunk.choices[0].delta.content == "a"
    assert chunk.usage == CompletionUsage(prompt_tokens=1, completion_tokens=2, total_tokens=3)


def test_tool_call_fragments_without_id_type_or_name() -> None:
    raw = {
        **SEED_CHUNK,
        "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "function": {"arguments": "{"}}]}}],
    }
    call = chunk_decoder.decode(json.dumps(raw)).choices[0].delta.tool_calls
    assert call is not None
    assert (call[0].index, call[0].id, call[0].type) == (1, None, None)
    assert call[0].function is not None and call[0].function.name is None
    assert call[0].function.arguments == "{"


def test_prompt_tokens_details_with_only_cached_tokens() -> None:
    raw = {
        **SEED_CHUNK,
        "choices": [],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 1,
            "total_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 5},
        },
    }
    usage = chunk_decoder.decode(json.dumps(raw)).usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 5
    assert usage.prompt_tokens_details.audio_tokens is None
    assert roundtrip(usage)["prompt_tokens_details"] == {"cached_tokens": 5}


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_reasoning_under_either_spelling(field: str) -> None:
    raw = {**SEED_CHUNK, "choices": [{"index": 0, "delta": {field: "thinking"}}]}
    delta = chunk_decoder.decode(json.dumps(raw)).choices[0].delta
    assert delta.reasoning_text == "thinking"
    assert roundtrip(delta) == {field: "thinking"}


def test_atoma_signature_and_response_hash_extras() -> None:
    raw = {**SEED_CHUNK, "signature": "c2ln", "response_hash": "aGFzaA=="}
    chunk = chunk_decoder.decode(json.dumps(raw))
    assert (chunk.signature, chunk.response_hash) == ("c2ln", "aGFzaA==")
    assert roundtrip(chunk)["response_hash"] == "aGFzaA=="


def test_usage_chunk_with_empty_choices_keeps_choices_on_the_wire() -> None:
    raw = {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    chunk = chunk_decoder.decode(json.dumps(raw))
    assert chunk.choices == []
    assert roundtrip(chunk) == raw


@pytest.mark.parametrize("stop_reason", [128009, "</s>", None])
def test_stop_reason_is_int_or_string(stop_reason: int | str | None) -> None:
    raw = {**SEED_CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": stop_reason}]}
    assert chunk_decoder.decode(json.dumps(raw)).choices[0].stop_reason == stop_reason


def test_atoma_logprobs_shape_with_only_top_logprobs() -> None:
    raw = {
        **SEED_CHUNK,
        "choices": [
            {
                "index": 0,
                "delta": {"content": "a"},
                "logprobs": {"content": [{"top_logprobs": [{"token": "a", "logprob": -0.1}]}]},
            }
        ],
    }
    logprobs = chunk_decoder.decode(json.dumps(raw)).choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert logprobs.content[0].top_logprobs[0].token == "a"


def test_logprob_zero_and_empty_top_logprobs_are_written() -> None:
    raw = {
        **SEED_CHUNK,
        "choices": [
            {
                "index": 0,
                "delta": {"content": "a"},
                "logprobs": {"content": [{"token": "a", "logprob": 0.0, "bytes": [97], "top_logprobs": []}]},
            }
        ],
    }
    chunk = chunk_decoder.decode(json.dumps(raw))
    assert roundtrip(chunk)["choices"] == raw["choices"]


def test_null_logprob_from_a_server_that_wrote_minus_infinity() -> None:
    raw = {
        **SEED_CHUNK,
        "choices": [
            {
                "index": 0,
                "delta": {"content": "a"},
                "logprobs": {
                    "content": [{"token": "a", "logprob": -0.5, "top_logprobs": [{"token": "b", "logprob": None}]}]
                },
            }
        ],
    }
    logprobs = chunk_decoder.decode(json.dumps(raw)).choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert logprobs.content[0].top_logprobs[0].logprob is None


def test_chat_completion_with_null_content_and_tool_calls() -> None:
    raw = {
        "id": "c",
        "object": "chat.completion",
        "created": 2,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
            }
        ],
        "usage": None,
    }
    completion = completion_decoder.decode(json.dumps(raw))
    assert completion.choices[0].message.content is None
    assert completion.choices[0].message.tool_calls is not None
    assert isinstance(completion, ChatCompletion)


def test_request_with_every_message_role_and_content_parts() -> None:
    raw = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        "stop": "\n\n",
        "stream_options": {"include_usage": True},
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "logit_bias": {"50256": -100},
        "logprobs": True,
        "top_logprobs": 3,
        "some_future_field": 1,
    }
    request = msgspec.json.decode(json.dumps(raw), type=ChatCompletionRequest)
    assert [type(message).__name__ for message in request.messages] == [
        SystemMessage.__name__,
        DeveloperMessage.__name__,
        UserMessage.__name__,
        AssistantMessage.__name__,
        ToolMessage.__name__,
    ]
    user = request.messages[2]
    assert isinstance(user, UserMessage) and isinstance(user.content, list)
    assert isinstance(user.content[0], TextContentPart) and isinstance(user.content[1], ImageContentPart)
    assert request.stop_sequences == ["\n\n"]
    assert request.include_usage
    assert isinstance(request.response_format, ResponseFormatJSONSchema)
    assert isinstance(request.tool_choice, NamedToolChoice)
    assert request.output_token_limit is None


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    request = ChatCompletionRequest(
        model="m", messages=[UserMessage(content="x")], max_tokens=5, max_completion_tokens=7
    )
    assert request.output_token_limit == 7
    assert ChatCompletionRequest(model="m", messages=[UserMessage(content="x")], max_tokens=5).output_token_limit == 5


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"temperature": 2.5}, "$.temperature"),
        ({"top_p": -0.1}, "$.top_p"),
        ({"n": 0}, "$.n"),
        ({"top_logprobs": 21}, "$.top_logprobs"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "$.messages[0]"),
        ({"messages": []}, "$.messages"),
        ({"tool_choice": "sometimes"}, "$.tool_choice"),
        ({"stop": ""}, "$.stop"),
        ({"logit_bias": {"1": 101}}, "$.logit_bias"),
    ],
)
def test_request_validation_names_the_parameter(patch: dict[str, object], path: str) -> None:
    raw = {"model": "m", "messages": [{"role": "user", "content": "x"}], **patch}
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.json.decode(json.dumps(raw), type=ChatCompletionRequest)
    assert f"at `{path}" in str(info.value)


@pytest.mark.parametrize(
    ("stream_options", "expected"),
    [(None, False), ({}, False), ({"include_usage": False}, False), ({"include_usage": True}, True)],
)
def test_include_usage_only_when_asked(stream_options: object, expected: bool) -> None:
    raw: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    if stream_options is not None:
        raw["stream_options"] = stream_options
    assert msgspec.json.decode(json.dumps(raw), type=ChatCompletionRequest).include_usage is expected


def test_legacy_completion_request_and_response() -> None:
    for prompt in ["hi", ["a", "b"], [1, 2, 3], [[1, 2], [3]]]:
        request = msgspec.json.decode(json.dumps({"model": "m", "prompt": prompt}), type=CompletionRequest)
        assert request.prompt == prompt
    completion = Completion(id="cmpl-1", created=1, model="m")
    assert roundtrip(completion)["object"] == "text_completion"


def test_error_body_always_has_the_four_openai_keys() -> None:
    body = roundtrip(ErrorResponse(error=ErrorDetail(message="bad", type="invalid_request_error")))
    assert body == {"error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": None}}
    tgi = msgspec.json.decode(b'{"error": {"message": "x", "http_status_code": 422}}', type=ErrorResponse)
    assert tgi.error.http_status_code == 422


def test_models_list() -> None:
    models = ModelList(data=[Model(id="a", created=1, owned_by="chunkwise")])
    assert roundtrip(models) == {
        "object": "list",
        "data": [{"id": "a", "object": "model", "created": 1, "owned_by": "chunkwise"}],
    }
