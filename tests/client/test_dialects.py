"""``client.responses`` and ``client.messages`` against a scripted dialect server on a real socket.

Every behaviour runs on both clients (sync and async) and both dialects: text, tool calls, the token limit,
error answers in each dialect's own shape, retries with ``Retry-After``, the in-stream error event, cut and
broken streams, and the first-event, idle and total deadlines.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import msgspec
import pytest

import chunkwise
from chunkwise.client._config import ClientConfig
from chunkwise.dialects import (
    MessagesResponse,
    ResponseFunctionCall,
    ResponseObject,
    TextBlock,
    ToolUseBlock,
)

from .dialect_server import MODEL, TEXT, WORDS, DialectServer, dialect_server
from .harness import KINDS, Kind

Dialect = Literal["responses", "messages"]
DIALECTS: list[Dialect] = ["responses", "messages"]
How = Literal["events", "text", "final", "unstreamed"]

SHORT = chunkwise.Timeouts(connect=2, first_chunk=0.3, idle=0.3)
FAST = {"backoff": chunkwise.Backoff(initial=0.01, maximum=0.02)}
#: A deadline fired rather than hung if the call ended by then (the scenarios never end by themselves).
FIRED_BY = 2.5


@pytest.fixture(scope="module")
def server() -> Iterator[DialectServer]:
    with dialect_server() as running:
        yield running


@dataclass
class Outcome:
    events: list[Any] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    final: ResponseObject | MessagesResponse | None = None
    snapshot: ResponseObject | MessagesResponse | None = None
    error: BaseException | None = None
    seconds: float = 0.0


def _create_args(dialect: Dialect, how: How, create: dict[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {"model": MODEL, "stream": how != "unstreamed"}
    if dialect == "responses":
        args["input"] = "Say hello"
    else:
        args["messages"] = [{"role": "user", "content": "Say hello"}]
        args["max_tokens"] = 16
    return {**args, **create}


def run(
    kind: Kind,
    dialect: Dialect,
    base_url: str,
    how: How = "events",
    client: dict[str, Any] | None = None,
    **create: Any,
) -> Outcome:
    """One request through a fresh client; errors are recorded, not raised."""
    if kind == "sync":
        return _run_sync(dialect, base_url, how, client or {}, create)
    return anyio.run(_run_async, dialect, base_url, how, client or {}, create)


def _run_sync(dialect: Dialect, base_url: str, how: How, options: dict[str, Any], create: dict[str, Any]) -> Outcome:
    outcome = Outcome()
    start = time.monotonic()
    with chunkwise.Client(base_url=base_url, **options) as client:
        stream: Any = None
        try:
            endpoint = client.responses if dialect == "responses" else client.messages
            result = endpoint.create(**_create_args(dialect, how, create))
            if isinstance(result, ResponseObject | MessagesResponse):
                outcome.final = result
            else:
                with result as stream:
                    if how == "events":
                        outcome.events.extend(stream)
                    elif how == "text":
                        outcome.texts.extend(stream.iter_text())
                    outcome.final = stream.final_response() if dialect == "responses" else stream.final_message()
        except chunkwise.ChunkwiseError as exc:
            _record_failure(outcome, exc, stream)
    outcome.seconds = time.monotonic() - start
    return outcome


async def _run_async(
    dialect: Dialect, base_url: str, how: How, options: dict[str, Any], create: dict[str, Any]
) -> Outcome:
    outcome = Outcome()
    start = time.monotonic()
    async with chunkwise.AsyncClient(base_url=base_url, **options) as client:
        stream: Any = None
        try:
            endpoint = client.responses if dialect == "responses" else client.messages
            result = await endpoint.create(**_create_args(dialect, how, create))
            if isinstance(result, ResponseObject | MessagesResponse):
                outcome.final = result
            else:
                async with result as stream:
                    if how == "events":
                        outcome.events.extend([event async for event in stream])
                    elif how == "text":
                        outcome.texts.extend([text async for text in stream.iter_text()])
                    if dialect == "responses":
                        outcome.final = await stream.final_response()
                    else:
                        outcome.final = await stream.final_message()
        except chunkwise.ChunkwiseError as exc:
            _record_failure(outcome, exc, stream)
    outcome.seconds = time.monotonic() - start
    return outcome


def _record_failure(outcome: Outcome, error: chunkwise.ChunkwiseError, stream: Any) -> None:
    outcome.error = error
    if stream is not None:  # what arrived before the failure
        outcome.events = list(stream.events)
        outcome.snapshot = stream.snapshot()


def text_of(final: ResponseObject | MessagesResponse | None) -> str:
    if isinstance(final, ResponseObject):
        return final.output_text
    assert isinstance(final, MessagesResponse)
    return "".join(block.text for block in final.content if isinstance(block, TextBlock))


# --- answers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("how", ["events", "text", "final", "unstreamed"])
def test_text_answer(server: DialectServer, kind: Kind, dialect: Dialect, how: How) -> None:
    outcome = run(kind, dialect, server.base_url("text"), how)

    assert outcome.error is None, outcome.error
    assert text_of(outcome.final) == TEXT
    if how == "text":
        assert outcome.texts == WORDS
    if how == "events":
        first, last = type(outcome.events[0]).__name__, type(outcome.events[-1]).__name__
        expected = ("ResponseCreatedEvent", "ResponseCompletedEvent")
        assert (first, last) == (expected if dialect == "responses" else ("MessageStartEvent", "MessageStopEvent"))
    # A streamed answer reassembles to exactly the object the server answers whole.
    whole = run(kind, dialect, server.base_url("text"), "unstreamed").final
    assert msgspec.json.encode(outcome.final) == msgspec.json.encode(whole)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("how", ["events", "unstreamed"])
def test_two_tool_calls_in_one_turn(server: DialectServer, kind: Kind, dialect: Dialect, how: How) -> None:
    outcome = run(kind, dialect, server.base_url("tools"), how)

    assert outcome.error is None, outcome.error
    final = outcome.final
    if isinstance(final, ResponseObject):
        calls = [item for item in final.output if isinstance(item, ResponseFunctionCall)]
        assert [(call.call_id, call.name, call.arguments) for call in calls] == [
            ("call_a", "get_weather", '{"city": "Paris"}'),
            ("call_b", "get_time", '{"tz": "CET"}'),
        ]
        assert final.status == "completed"
    else:
        assert isinstance(final, MessagesResponse)
        uses = [block for block in final.content if isinstance(block, ToolUseBlock)]
        assert [(use.id, use.name, use.input) for use in uses] == [
            ("call_a", "get_weather", {"city": "Paris"}),
            ("call_b", "get_time", {"tz": "CET"}),
        ]
        assert final.stop_reason == "tool_use"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_token_limit_is_a_proper_end(server: DialectServer, kind: Kind, dialect: Dialect) -> None:
    outcome = run(kind, dialect, server.base_url("length"))

    assert outcome.error is None, outcome.error
    final = outcome.final
    if isinstance(final, ResponseObject):
        assert final.status == "incomplete"
        assert final.incomplete_details is not None and final.incomplete_details.reason == "max_output_tokens"
    else:
        assert isinstance(final, MessagesResponse) and final.stop_reason == "max_tokens"
    assert text_of(final) == "".join(WORDS[:2])


# --- error answers and retries --------------------------------------------------------------------------


STATUS_ERRORS = [
    (400, chunkwise.BadRequestError, "invalid_request_error"),
    (401, chunkwise.AuthenticationError, "authentication_error"),
    (404, chunkwise.NotFoundError, "not_found_error"),
    (429, chunkwise.RateLimitError, "rate_limit_error"),
    (500, chunkwise.InternalServerError, "api_error"),
    (529, chunkwise.InternalServerError, "overloaded_error"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("status", "error_class", "anthropic_type"), STATUS_ERRORS)
def test_error_answers_in_each_dialects_shape(
    server: DialectServer, kind: Kind, dialect: Dialect, status: int, error_class: type[Exception], anthropic_type: str
) -> None:
    base_url = server.base_url(f"status-{status}")
    outcome = run(kind, dialect, base_url, client={"max_retries": 0})

    error = outcome.error
    assert type(error) is error_class
    assert isinstance(error, chunkwise.APIStatusError)
    assert error.status_code == status
    assert error.error is not None and error.error.message == f"scripted {status}"
    assert str(error).endswith(f": scripted {status}")
    assert error.request_id == "req-1"
    if dialect == "messages":  # Anthropic's {"type": "error", "error": {"type", "message"}}
        assert error.error.type == anthropic_type


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("scenario", ["busy-then-text", "overloaded-then-text"])
@pytest.mark.parametrize("how", ["events", "unstreamed"])
def test_429_and_529_are_retried_after_retry_after(
    server: DialectServer, kind: Kind, dialect: Dialect, scenario: str, how: How
) -> None:
    base_url = server.base_url(scenario)
    outcome = run(kind, dialect, base_url, how)

    assert outcome.error is None, outcome.error
    assert text_of(outcome.final) == TEXT
    assert len(server.requests(base_url)) == 2
    assert outcome.seconds >= 0.28  # the server's Retry-After, not the client's quick back-off


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_client_error_is_not_retried(server: DialectServer, kind: Kind, dialect: Dialect) -> None:
    base_url = server.base_url("status-400")
    outcome = run(kind, dialect, base_url, client=FAST)

    assert isinstance(outcome.error, chunkwise.BadRequestError)
    assert len(server.requests(base_url)) == 1


# --- streams that go wrong --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_error_event_raises_stream_error(server: DialectServer, kind: Kind, dialect: Dialect) -> None:
    outcome = run(kind, dialect, server.base_url("error-event"), client=FAST)

    error = outcome.error
    assert isinstance(error, chunkwise.StreamError)
    assert error.message == "engine crashed" and error.error.message == "engine crashed"
    assert error.request_id == "req-1"
    # Responses: `error` then `response.failed`; Messages: `error`. Neither is delivered as an event.
    names = [type(event).__name__ for event in outcome.events]
    assert names and not any("Error" in name or "Failed" in name for name in names)
    assert text_of(outcome.snapshot).startswith("Hello")


@pytest.mark.parametrize("kind", KINDS)
def test_response_failed_without_an_error_event_raises_stream_error(server: DialectServer, kind: Kind) -> None:
    outcome = run(kind, "responses", server.base_url("failed"))

    error = outcome.error
    assert isinstance(error, chunkwise.StreamError)
    assert error.message == "out of memory" and error.error.code == "server_error"
    assert isinstance(outcome.snapshot, ResponseObject) and outcome.snapshot.status == "failed"


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_response_answered_whole_raises(server: DialectServer, kind: Kind) -> None:
    # A 200 whose body is a failed response: an error, not a result to overlook.
    outcome = run(kind, "responses", server.base_url("failed"), "unstreamed")

    error = outcome.error
    assert isinstance(error, chunkwise.UnexpectedResponseError)
    assert error.error is not None and error.error.message == "out of memory"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("scenario", ["cut", "broken"])
def test_a_stream_cut_short_raises_incomplete_stream_error(
    server: DialectServer, kind: Kind, dialect: Dialect, scenario: str
) -> None:
    base_url = server.base_url(scenario)
    outcome = run(kind, dialect, base_url, client=FAST)

    error = outcome.error
    assert isinstance(error, chunkwise.IncompleteStreamError)
    assert error.chunks_received == len(outcome.events) > 0
    # `partial` is the chat view of what arrived; the stream's snapshot is the dialect's.
    partial = error.partial.choices[0].message.content or ""
    assert partial and TEXT.startswith(partial)
    assert partial == text_of(outcome.snapshot)
    assert error.partial.choices[0].finish_reason is None
    assert len(server.requests(base_url)) == 1  # a stream that produced events is never retried


# --- deadlines --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("how", ["events", "unstreamed"])
def test_first_event_deadline(server: DialectServer, kind: Kind, dialect: Dialect, how: How) -> None:
    outcome = run(kind, dialect, server.base_url("slow-start"), how, client={"timeout": SHORT})

    assert isinstance(outcome.error, chunkwise.FirstChunkTimeoutError)
    assert outcome.seconds < FIRED_BY


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("scenario", ["stall", "keepalives"])
def test_idle_deadline_counts_events_not_keepalives(
    server: DialectServer, kind: Kind, dialect: Dialect, scenario: str
) -> None:
    # After the first event: silence, or keep-alives every 20 ms (Anthropic's `ping` events for Messages).
    outcome = run(kind, dialect, server.base_url(scenario), client={"timeout": SHORT})

    error = outcome.error
    assert isinstance(error, chunkwise.IdleTimeoutError)
    assert error.request_id == "req-1"
    assert 0.3 <= outcome.seconds < FIRED_BY


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_total_deadline_ends_an_endless_stream(server: DialectServer, kind: Kind, dialect: Dialect) -> None:
    timeouts = chunkwise.Timeouts(connect=2, first_chunk=2, idle=2, total=0.6)
    outcome = run(kind, dialect, server.base_url("endless"), client={"timeout": timeouts})

    assert isinstance(outcome.error, chunkwise.TotalTimeoutError)
    assert len(outcome.events) > 5
    assert 0.6 <= outcome.seconds < FIRED_BY


# --- what goes on the wire ----------------------------------------------------------------------------


def test_the_request_bodies(server: DialectServer) -> None:
    responses_url, messages_url = server.base_url("text"), server.base_url("text")
    with chunkwise.Client(base_url=responses_url, api_key="k") as client:
        client.responses.create(
            model=MODEL, input="Hi", stream=True, instructions="Be brief", max_output_tokens=7, extra_body={"x": 1}
        ).close()
    with chunkwise.Client(base_url=messages_url, api_key="k") as client:
        client.messages.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=9, system="Be brief", top_k=3
        )

    responses, messages = server.requests(responses_url)[0], server.requests(messages_url)[0]
    assert responses.path.endswith("/v1/responses")
    expected = {"model": MODEL, "input": "Hi", "instructions": "Be brief", "max_output_tokens": 7, "stream": True}
    assert responses.body == {**expected, "x": 1}
    assert messages.path.endswith("/v1/messages")
    assert messages.body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 9,
        "system": "Be brief",
        "top_k": 3,
    }


def test_messages_send_anthropic_headers_and_responses_do_not(server: DialectServer) -> None:
    responses_url, messages_url = server.base_url("text"), server.base_url("text")
    with chunkwise.Client(base_url=responses_url, api_key="sk-1") as client:
        client.responses.create(model=MODEL, input="Hi")
    with chunkwise.Client(base_url=messages_url, api_key="sk-1") as client:
        client.messages.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)

    responses, messages = server.requests(responses_url)[0].headers, server.requests(messages_url)[0].headers
    assert responses["authorization"] == "Bearer sk-1"
    assert "x-api-key" not in responses and "anthropic-version" not in responses
    # Anthropic-style servers read x-api-key, OpenAI-style ones Authorization: both carry the key.
    assert messages["x-api-key"] == "sk-1" and messages["authorization"] == "Bearer sk-1"
    assert messages["anthropic-version"] == "2023-06-01"


def _config(base_url: str, api_key: str | None, headers: dict[str, str] | None = None) -> ClientConfig:
    return ClientConfig.resolve(
        base_url=base_url,
        api_key=api_key,
        timeout=None,
        max_retries=0,
        backoff=chunkwise.Backoff(),
        default_headers=headers,
        default_query=None,
        environ={},
    )


def test_to_anthropic_itself_the_key_goes_only_in_x_api_key() -> None:
    headers = _config("https://api.anthropic.com/v1", "sk-ant").messages_headers()
    assert headers["x-api-key"] == "sk-ant" and "authorization" not in headers
    # An Authorization header of the caller's own (an OAuth token) is kept.
    own = _config("https://api.anthropic.com/v1", "sk-ant", {"authorization": "Bearer oauth"}).messages_headers()
    assert own["authorization"] == "Bearer oauth"
    # Without a key there is nothing to send; the version still goes.
    keyless = _config("http://127.0.0.1:8000/v1", None).messages_headers()
    assert "x-api-key" not in keyless and "authorization" not in keyless
    assert keyless["anthropic-version"] == "2023-06-01"
    # default_headers win over the defaults.
    pinned = _config("http://h/v1", "k", {"anthropic-version": "2024-01-01", "x-api-key": "other"}).messages_headers()
    assert (pinned["anthropic-version"], pinned["x-api-key"]) == ("2024-01-01", "other")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_bad_arguments_are_refused_before_sending(server: DialectServer, dialect: Dialect) -> None:
    base_url = server.base_url("text")
    with chunkwise.Client(base_url=base_url) as client:
        endpoint: Any = client.responses if dialect == "responses" else client.messages
        with pytest.raises(TypeError, match="max_output_tokn"):
            endpoint.create(**_create_args(dialect, "unstreamed", {"max_output_tokn": 3}))
        with pytest.raises(chunkwise.RequestValidationError, match=f"invalid {dialect.title()} request"):
            endpoint.create(**_create_args(dialect, "unstreamed", {"temperature": 7.0}))
    assert server.requests(base_url) == []
