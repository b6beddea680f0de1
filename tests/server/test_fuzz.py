"""Property-based tests against the real server, each with a fixed example budget so CI time stays bounded.

* Fuzzing: request bodies drawn from the server's own ``/openapi.json`` (schemathesis) for every POST
  endpoint that takes a body: generation, embeddings, tokens and the confidential routes. Whatever
  arrives, the answer is never a 5xx, every error is in its dialect's shape (OpenAI's; Anthropic's on
  ``/v1/messages``), every stream ends properly, and the server still answers afterwards.
* Structured output: generated JSON Schemas from the supported keywords; every ``finish_reason: "stop"``
  output validates with the ``jsonschema`` library.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from chunkwise.dialects import (
    MessagesErrorEvent,
    MessagesStreamDecoder,
    MessageStopEvent,
    ResponseCompletedEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponsesStreamDecoder,
)

from .conftest import MODEL

#: Examples per property; small and derandomized so that the suite's run time is fixed.
FUZZ_EXAMPLES = 25
SCHEMA_EXAMPLES = 12

FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def openapi_body_strategy(document: dict[str, Any], path: str) -> st.SearchStrategy[Any]:
    """Bodies that follow the document (positive) and bodies that break it on purpose (negative)."""
    operation = schemathesis.openapi.from_dict(document)[path]["POST"]
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    return st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in modes)).map(lambda case: case.body)


@pytest.fixture(scope="module")
def document(http: httpx.Client) -> dict[str, Any]:
    loaded: dict[str, Any] = http.get("/openapi.json").json()
    return loaded


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


#: Fields from the red-team report of issue #9, mixed into drawn bodies so that the fuzzer tries them too.
HOSTILE_FIELDS: list[dict[str, Any]] = [
    {},
    {"response_format": schema_format({"type": "array", "items": {"type": "integer"}, "maxItems": 100000})},
    {"response_format": schema_format({"type": "integer", "minimum": 5, "maximum": 2})},
    {"logit_bias": {" 1": 1, "1_0": 2, "١": 3}},
    {"function_call": {}},
]
#: An unknown field nested deeper than any recursion limit.
DEEP = b', "junk": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def cheap(body: dict[str, Any], use_served_model: bool) -> dict[str, Any]:
    """Keep a drawn body valid where it decides cost: few tokens, and mostly the served model."""
    body = dict(body)
    if use_served_model:
        body["model"] = MODEL
    for field in ("max_tokens", "max_completion_tokens"):
        if isinstance(body.get(field), int):
            body[field] = min(body[field], 3)
    if "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = 3
    if isinstance(body.get("n"), int) and body["n"] <= 8:
        body["n"] = min(body["n"], 2)
    if isinstance(body.get("input"), list):  # embeddings: a few inputs, each cut short
        body["input"] = [item[:64] if isinstance(item, str | list) else item for item in body["input"][:4]]
    return body


def check_answer(http: httpx.Client, response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/json", response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    elif response.headers["content-type"] == "text/event-stream":
        events = response.text.rstrip("\n").split("\n\n")
        assert events[-1] == "data: [DONE]", response.text[-300:]
        for event in events[:-1]:
            if event.startswith("data: "):
                payload = json.loads(event.removeprefix("data: "))
                assert "error" not in payload or set(payload["error"]) == {"message", "type", "param", "code"}
    else:
        answer = response.json()
        assert answer.get("object") in ("chat.completion", "text_completion", "list") or set(answer) & {
            "tokens",
            "content",
        }, answer
    assert http.get("/health").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/tokenize",
        "/detokenize",
        "/v1/confidential/chat/completions",
        "/v1/confidential/completions",
        "/v1/confidential/embeddings",
    ],
)
def test_fuzzed_bodies_from_the_openapi_document(http: httpx.Client, document: dict[str, Any], path: str) -> None:
    @FUZZ_SETTINGS
    @given(
        body=openapi_body_strategy(document, path),
        use_served_model=st.booleans(),
        hostile=st.sampled_from(HOSTILE_FIELDS),
        deep=st.booleans(),
    )
    def fuzz(body: Any, use_served_model: bool, hostile: dict[str, Any], deep: bool) -> None:
        if isinstance(body, dict):
            body = {**cheap(body, use_served_model), **hostile}
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        if deep and isinstance(body, dict) and body:
            content = content[:-1] + DEEP
        check_answer(http, http.post(path, content=content, headers={"content-type": "application/json"}))

    fuzz()


#: Each dialect's field that decides the cost, and the one it may not go without.
DIALECT_LIMITS = {"/v1/responses": "max_output_tokens", "/v1/messages": "max_tokens"}


def cheap_dialect(body: dict[str, Any], path: str, use_served_model: bool) -> dict[str, Any]:
    body = dict(body)
    if use_served_model:
        body["model"] = MODEL
    limit = DIALECT_LIMITS[path]
    body[limit] = min(body[limit], 3) if isinstance(body.get(limit), int) and body[limit] > 0 else 3
    return body


def check_dialect_answer(http: httpx.Client, path: str, response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/json", response.text
        body = response.json()
        if path == "/v1/messages":
            assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
        else:
            assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["message"], body
    elif response.headers["content-type"] == "text/event-stream":
        if path == "/v1/messages":
            decoder: Any = MessagesStreamDecoder()
            endings: tuple[type, ...] = (MessageStopEvent, MessagesErrorEvent)
        else:
            decoder = ResponsesStreamDecoder()
            endings = (ResponseCompletedEvent, ResponseIncompleteEvent, ResponseFailedEvent)
        events = [*decoder.feed(response.content), *decoder.close()]
        assert events and isinstance(events[-1], endings), response.text[-300:]
    else:
        assert response.json()["type" if path == "/v1/messages" else "object"] in ("message", "response")
    assert http.get("/health").status_code == 200


@pytest.mark.parametrize("path", sorted(DIALECT_LIMITS))
def test_fuzzed_dialect_bodies_from_the_openapi_document(
    http: httpx.Client, document: dict[str, Any], path: str
) -> None:
    @FUZZ_SETTINGS
    @given(body=openapi_body_strategy(document, path), use_served_model=st.booleans(), deep=st.booleans())
    def fuzz(body: Any, use_served_model: bool, deep: bool) -> None:
        if isinstance(body, dict):
            body = cheap_dialect(body, path, use_served_model)
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        if deep and isinstance(body, dict) and body:
            content = content[:-1] + DEEP
        check_dialect_answer(http, path, http.post(path, content=content, headers={"content-type": "application/json"}))

    fuzz()


# --- structured output ------------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "name", "n-1", "ключ", "x y"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-50, 50), st.text('abc🐉"\\', max_size=3))


@st.composite
def integer_schemas(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.integers(-10_000, 10_000))
    high = draw(st.integers(low, low + draw(st.sampled_from([0, 3, 99, 100_000]))))
    schema: dict[str, Any] = {"type": "integer"}
    if draw(st.booleans()):
        schema["minimum"] = low
    if draw(st.booleans()):
        schema["maximum"] = high
    elif draw(st.booleans()):
        schema["exclusiveMaximum"] = high + 1
    return schema


@st.composite
def number_schemas(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.integers(-100, 100))
    schema: dict[str, Any] = {"type": "number", "minimum": low - draw(st.sampled_from([0, 0.5]))}
    if draw(st.booleans()):
        schema["exclusiveMaximum"] = low + draw(st.integers(1, 20)) + draw(st.sampled_from([0, 0.25]))
    return schema


@st.composite
def string_schemas(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 3)) == 0:
        return {"type": "string", "format": draw(st.sampled_from(["date", "time", "date-time", "uuid"]))}
    if draw(st.booleans()):
        pattern = draw(st.sampled_from(["^[a-z]{1,4}$", "^[A-Z][0-9]+$", "x(ab|cd)?y", "^\\d{2}-\\w{1,3}$", "[^a-z]"]))
        return {"type": "string", "pattern": pattern}
    low = draw(st.integers(0, 4))
    return {"type": "string", "minLength": low, "maxLength": low + draw(st.integers(0, 6))}


LEAVES = st.one_of(
    integer_schemas(),
    number_schemas(),
    string_schemas(),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.lists(SCALARS, min_size=1, max_size=3, unique_by=json.dumps).map(lambda values: {"enum": values}),
    SCALARS.map(lambda value: {"const": value}),
)


def containers(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    objects = st.builds(
        lambda properties, required, closed: {
            "type": "object",
            "properties": properties,
            "required": [name for name in properties if name in required],
            **({"additionalProperties": False} if closed else {}),
        },
        st.dictionaries(NAMES, children, max_size=3),
        st.sets(NAMES),
        st.booleans(),
    )
    arrays = st.builds(
        lambda items, low, extra: {"type": "array", "items": items, "minItems": low, "maxItems": low + extra},
        children,
        st.integers(0, 2),
        st.integers(0, 2),
    )
    choices = st.lists(children, min_size=2, max_size=3).map(lambda branches: {"anyOf": branches})
    return st.one_of(objects, arrays, choices)


SCHEMAS = st.recursive(LEAVES, containers, max_leaves=4)


def test_every_finished_structured_output_validates(http: httpx.Client) -> None:
    finished: list[Any] = []

    @settings(
        max_examples=SCHEMA_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(schema=SCHEMAS, seed=st.integers(0, 1000))
    def check(schema: dict[str, Any], seed: int) -> None:
        jsonschema.Draft202012Validator.check_schema(schema)
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Answer in JSON."}],
            "max_tokens": 48,
            "temperature": 1.0,
            "seed": seed,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        }
        response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, (schema, response.text)
        choice = response.json()["choices"][0]
        if choice["finish_reason"] == "stop":
            output = json.loads(choice["message"]["content"])
            validator = jsonschema.Draft202012Validator
            jsonschema.validate(output, schema, cls=validator, format_checker=validator.FORMAT_CHECKER)
            finished.append(output)

    check()
    assert finished, "no generated schema finished within its budget: the property was never checked"
