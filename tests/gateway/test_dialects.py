"""The Responses API and Anthropic Messages through the gateway, translated to a real chunkwise chat upstream:
the official SDKs unmodified, keys in either header, the ledger, and errors in each dialect's shape."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from chunkwise.dialects import (
    MessagesErrorEvent,
    MessagesStreamDecoder,
    MessageStartEvent,
    MessageStopEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponsesStreamDecoder,
)
from tests.client.fault_server import FaultServer
from tests.sdk_dialects import MESSAGES_CHECKS, RESPONSES_CHECKS
from tests.server.conftest import MODEL, RunningServer
from tests.vercel_ai_sdk import DIALECTS, check_text, check_tool_call, drive

from .conftest import RunningGateway, create_key, make_config, run_gateway


@pytest.fixture(scope="module")
def dialect_gateway(
    upstream: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningGateway, str]]:
    database: Path = tmp_path_factory.mktemp("dialects") / "gateway.db"
    config = make_config(f"sqlite:///{database}", [("a", f"{upstream.url}/v1", [MODEL])])
    key = create_key(config, "dialects")
    with run_gateway(config) as gateway:
        yield gateway, key


@pytest.mark.parametrize("check", RESPONSES_CHECKS, ids=lambda check: check.__name__)
def test_responses_sdk_through_the_gateway(
    dialect_gateway: tuple[RunningGateway, str], check: Callable[[openai.OpenAI, str], Any]
) -> None:
    gateway, key = dialect_gateway
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=60) as client:
        check(client, MODEL)


@pytest.mark.parametrize("check", MESSAGES_CHECKS, ids=lambda check: check.__name__)
def test_anthropic_sdk_through_the_gateway(
    dialect_gateway: tuple[RunningGateway, str], check: Callable[[anthropic.Anthropic, str], Any]
) -> None:
    gateway, key = dialect_gateway
    # The anthropic SDK sends its key as `x-api-key`.
    with anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=60) as client:
        check(client, MODEL)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_vercel_ai_sdk_through_the_gateway(dialect_gateway: tuple[RunningGateway, str], dialect: str) -> None:
    gateway, key = dialect_gateway
    check_tool_call(drive(gateway.url, MODEL, dialect, "tool", api_key=key))
    # A second turn: the OpenAI provider names its first answer by an item_reference, which the gateway keeps.
    conversation = drive(gateway.url, MODEL, dialect, "turns", api_key=key)
    check_text(conversation)
    assert len(conversation["turns"]) == 2


def test_a_wrong_key_is_refused_in_each_dialects_shape(dialect_gateway: tuple[RunningGateway, str]) -> None:
    gateway, _ = dialect_gateway
    hello: Any = [{"role": "user", "content": "Hi"}]
    with (
        anthropic.Anthropic(base_url=gateway.url, api_key="wrong", max_retries=0) as client,
        pytest.raises(anthropic.AuthenticationError) as refused,
    ):
        client.messages.create(model=MODEL, max_tokens=2, messages=hello)
    assert refused.value.body["type"] == "error"  # type: ignore[index]
    assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    # The proxied routes are POST only; Starlette's router answers the rest, in the path's dialect's shape.
    wrong_method = httpx.get(f"{gateway.url}/v1/messages", timeout=30)
    assert wrong_method.status_code == 404
    assert wrong_method.json()["error"]["type"] == "not_found_error"
    with (
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="wrong", max_retries=0) as openai_client,
        pytest.raises(openai.AuthenticationError) as openai_refused,
    ):
        openai_client.responses.create(model=MODEL, input="Hi", max_output_tokens=2)
    assert openai_refused.value.code == "invalid_api_key"


def test_translated_streams_are_billed_with_the_upstream_usage(upstream: RunningServer, sqlite_url: str) -> None:
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])])
    key = create_key(config, "bill")
    with run_gateway(config) as gateway, httpx.Client(base_url=gateway.url, timeout=60) as http:
        responses_body = {"model": MODEL, "input": "Say hi", "max_output_tokens": 5, "stream": True}
        streamed = http.post("/v1/responses", json=responses_body, headers={"x-api-key": key})
        decoder = ResponsesStreamDecoder()
        events = [*decoder.feed(streamed.content), *decoder.close()]
        final = events[-1].response  # type: ignore[union-attr]
        messages_body = {
            "model": MODEL,
            "max_tokens": 5,
            "stream": True,
            "messages": [{"role": "user", "content": "Say hi"}],
        }
        streamed = http.post("/v1/messages", json=messages_body, headers={"authorization": f"Bearer {key}"})
        message_decoder = MessagesStreamDecoder()
        message_events = [*message_decoder.feed(streamed.content), *message_decoder.close()]
        rows = gateway.usage_rows(2)
    assert isinstance(message_events[-1], MessageStopEvent)
    assert [(row["status"], row["outcome"]) for row in rows] == [(200, "ok"), (200, "ok")]
    usage = final.usage
    assert usage is not None
    assert (rows[0]["prompt_tokens"], rows[0]["completion_tokens"]) == (usage.input_tokens, usage.output_tokens)
    assert rows[1]["completion_tokens"] == 5
    assert all(row["upstream"] == "a" and row["model"] == MODEL for row in rows)


def test_bad_dialect_input_is_a_400_in_the_dialects_shape_and_settles_the_reservation(
    upstream: RunningServer, sqlite_url: str
) -> None:
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])])
    key = create_key(config)
    with run_gateway(config) as gateway, httpx.Client(base_url=gateway.url, timeout=60) as http:
        image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
        body = {"model": MODEL, "max_tokens": 3, "messages": [{"role": "user", "content": [image]}]}
        refused = http.post("/v1/messages", json=body, headers={"x-api-key": key})
        assert refused.status_code == 400
        assert refused.json()["type"] == "error"
        assert refused.json()["error"]["type"] == "invalid_request_error"
        missing = http.post(
            "/v1/responses", json={"model": MODEL, "input": [{"type": "bogus"}]}, headers={"x-api-key": key}
        )
        assert missing.status_code == 400
        assert missing.json()["error"]["param"] == "input[0].type"
        rows = gateway.usage_rows(2)
    assert [(row["status"], row["outcome"]) for row in rows] == [(400, "bad_request"), (400, "bad_request")]


@pytest.mark.parametrize(
    ("script", "message", "outcome"),
    [
        ("truncated", "before it was complete", "cut_short"),
        ("cut_short", "failed mid-stream", "cut_short"),
        ("garbage", "unreadable stream", "cut_short"),
        ("error_mid_stream", "engine crashed", "upstream_error"),
    ],
)
def test_a_broken_upstream_stream_ends_each_dialect_with_its_error_events(
    fault: FaultServer, sqlite_url: str, script: str, message: str, outcome: str
) -> None:
    # Scripted upstream: a real server does not break its streams on demand.
    config = make_config(sqlite_url, [("f", fault.base_url(script), ["fault-model"])])
    key = create_key(config)
    headers = {"x-api-key": key}
    with run_gateway(config) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as http:
        responses = http.post(
            "/v1/responses", json={"model": "fault-model", "input": "Hi", "stream": True}, headers=headers
        )
        decoder = ResponsesStreamDecoder()
        events: list[Any] = [*decoder.feed(responses.content), *decoder.close()]
        error, failed = events[-2:]
        assert isinstance(error, ResponseErrorEvent) and message in error.message
        assert isinstance(failed, ResponseFailedEvent) and failed.response.status == "failed"
        body = {
            "model": "fault-model",
            "max_tokens": 5,
            "stream": True,
            "messages": [{"role": "user", "content": "Hi"}],
        }
        messages = http.post("/v1/messages", json=body, headers=headers)
        message_decoder = MessagesStreamDecoder()
        message_events: list[Any] = [*message_decoder.feed(messages.content), *message_decoder.close()]
        assert isinstance(message_events[0], MessageStartEvent)
        assert isinstance(message_events[-1], MessagesErrorEvent) and message in message_events[-1].error.message
        rows = gateway.usage_rows(2)
    assert [row["outcome"] for row in rows] == [outcome, outcome]


def test_a_whole_answer_that_is_no_chat_completion_is_a_502_in_the_dialects_shape(
    fault: FaultServer, sqlite_url: str
) -> None:
    # Scripted upstream: it answers a stream (and then garbage) where a whole completion was asked for.
    config = make_config(sqlite_url, [("f", fault.base_url("garbage"), ["fault-model"])])
    key = create_key(config)
    body = {"model": "fault-model", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}
    with run_gateway(config) as gateway:
        answer = httpx.post(f"{gateway.url}/v1/messages", json=body, headers={"x-api-key": key}, timeout=30)
    assert answer.status_code == 502
    assert answer.json()["type"] == "error" and answer.json()["error"]["type"] == "api_error"


def test_a_key_reads_and_continues_only_its_own_stored_responses(upstream: RunningServer, sqlite_url: str) -> None:
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])])
    alice, bob = create_key(config, "alice"), create_key(config, "bob")
    with run_gateway(config) as gateway:
        with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=alice, max_retries=0, timeout=60) as as_alice:
            made = as_alice.responses.create(model=MODEL, input="Hi", max_output_tokens=2)
            assert as_alice.responses.retrieve(made.id).id == made.id
        with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=bob, max_retries=0, timeout=60) as as_bob:
            with pytest.raises(openai.NotFoundError):
                as_bob.responses.retrieve(made.id)
            with pytest.raises(openai.NotFoundError):
                as_bob.responses.delete(made.id)
            with pytest.raises(openai.NotFoundError):
                as_bob.responses.create(model=MODEL, input="Hi", previous_response_id=made.id, max_output_tokens=2)
