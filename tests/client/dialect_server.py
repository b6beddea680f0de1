"""A scripted Responses and Messages server: real uvicorn on loopback, real SSE, content chosen by the test.

The events are what chunkwise's own dialect writers (``ChatToResponses``, ``ChatToMessages``) make of a scripted
chat stream, encoded with ``encode_dialect_event``, so the client is tested against the same bytes a dialect
server sends, with faults (error answers in each dialect's shape, in-stream errors, cut streams, stalls) that a
server with a real model cannot be made to produce on demand. The URL picks the scenario and a token that keeps
each test's requests apart::

    http://127.0.0.1:PORT/<scenario>/<token>/v1/responses      (or /v1/messages)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from chunkwise.accumulate import accumulate
from chunkwise.dialects import (
    ChatToMessages,
    ChatToResponses,
    PingEvent,
    ResponseErrorEvent,
    ResponsesRequest,
    completion_to_message,
    completion_to_response,
    encode_dialect_event,
    messages_error,
    new_response,
)
from chunkwise.types import (
    ChatCompletionChunk,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChunkChoice,
    CompletionUsage,
)
from tests.server.conftest import run_uvicorn

MODEL = "dialect-model"
CREATED = 1730000000
WORDS = ["Hello", ",", " world", "!"]
TEXT = "".join(WORDS)
USAGE = CompletionUsage(prompt_tokens=5, completion_tokens=4, total_tokens=9)


def _chunk(delta: ChoiceDelta | None = None, finish: str | None = None) -> ChatCompletionChunk:
    choice = ChunkChoice(index=0, delta=delta or ChoiceDelta(), finish_reason=finish)
    return ChatCompletionChunk(id="chatcmpl-script", created=CREATED, model=MODEL, choices=[choice])


def _call(index: int, *, call_id: str | None = None, name: str | None = None, arguments: str) -> ChatCompletionChunk:
    function = ChoiceDeltaToolCallFunction(name=name, arguments=arguments)
    kind = "function" if call_id is not None else None
    fragment = ChoiceDeltaToolCall(index=index, id=call_id, type=kind, function=function)
    return _chunk(ChoiceDelta(tool_calls=[fragment]))


USAGE_CHUNK = ChatCompletionChunk(id="chatcmpl-script", created=CREATED, model=MODEL, choices=[], usage=USAGE)

TEXT_CHUNKS = [
    _chunk(ChoiceDelta(role="assistant", content="")),
    *(_chunk(ChoiceDelta(content=word)) for word in WORDS),
    _chunk(finish="stop"),
    USAGE_CHUNK,
]

#: Two calls in one turn, the first one's arguments in two pieces.
TOOL_CHUNKS = [
    _chunk(ChoiceDelta(role="assistant")),
    _call(0, call_id="call_a", name="get_weather", arguments='{"city":'),
    _call(0, arguments=' "Paris"}'),
    _call(1, call_id="call_b", name="get_time", arguments='{"tz": "CET"}'),
    _chunk(finish="tool_calls"),
    USAGE_CHUNK,
]

#: Cut by the token limit.
LENGTH_CHUNKS = [*TEXT_CHUNKS[:3], _chunk(finish="length"), USAGE_CHUNK]


@dataclass
class Seen:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class TokenState:
    requests: list[Seen] = field(default_factory=list)


class _Dialect:
    """How one dialect's scripted answers are written."""

    def __init__(self, endpoint: str, body: dict[str, Any]) -> None:
        self.messages = endpoint == "messages"
        self.body = body

    def writer(self) -> ChatToResponses | ChatToMessages:
        if self.messages:
            return ChatToMessages(message_id="msg_script", model=MODEL, input_tokens=USAGE.prompt_tokens)
        request = msgspec.convert(self.body, ResponsesRequest)
        return ChatToResponses(new_response(request, response_id="resp_script", created_at=CREATED, model=MODEL))

    def events(self, chunks: list[ChatCompletionChunk]) -> list[bytes]:
        writer = self.writer()
        events = [event for chunk in chunks for event in writer.feed(chunk)]
        events += writer.finish()
        return [encode_dialect_event(event) for event in events]

    def failing(self, chunks: list[ChatCompletionChunk], message: str) -> list[bytes]:
        writer = self.writer()
        events = [event for chunk in chunks for event in writer.feed(chunk)]
        events += writer.fail(message)
        return [encode_dialect_event(event) for event in events]

    def failed_response(self, chunks: list[ChatCompletionChunk], message: str) -> tuple[list[bytes], bytes]:
        """Responses only: the events of a failed stream without its ``error`` event, and the failed response."""
        writer = self.writer()
        assert isinstance(writer, ChatToResponses)
        events = [event for chunk in chunks for event in writer.feed(chunk)]
        events += [event for event in writer.fail(message) if not isinstance(event, ResponseErrorEvent)]
        return [encode_dialect_event(event) for event in events], msgspec.json.encode(writer.response)

    def whole(self, chunks: list[ChatCompletionChunk]) -> bytes:
        completion = accumulate(chunks)
        if self.messages:
            return msgspec.json.encode(completion_to_message(completion, message_id="msg_script", model=MODEL))
        request = msgspec.convert(self.body, ResponsesRequest)
        template = new_response(request, response_id="resp_script", created_at=CREATED, model=MODEL)
        return msgspec.json.encode(completion_to_response(completion, template))

    def error(self, status: int, message: str) -> bytes:
        """An error answer in the dialect's own shape."""
        if self.messages:
            return msgspec.json.encode(messages_error(status, message))
        kind = "invalid_request_error" if status < 500 else "server_error"
        return msgspec.json.encode({"error": {"message": message, "type": kind, "param": None, "code": None}})


def _sse(parts: AsyncIterator[bytes], headers: dict[str, str]) -> StreamingResponse:
    return StreamingResponse(parts, media_type="text/event-stream", headers=headers)


async def _paced(parts: list[bytes], pause: float = 0.0) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
        if pause:
            await asyncio.sleep(pause)


async def answer(
    dialect: _Dialect, chunks: list[ChatCompletionChunk], stream: bool, headers: dict[str, str]
) -> Response:
    if stream:
        return _sse(_paced(dialect.events(chunks)), headers)
    return Response(dialect.whole(chunks), media_type="application/json", headers=headers)


async def scenario(name: str, dialect: _Dialect, attempt: int, stream: bool, headers: dict[str, str]) -> Response:
    if name == "text":
        return await answer(dialect, TEXT_CHUNKS, stream, headers)
    if name == "tools":
        return await answer(dialect, TOOL_CHUNKS, stream, headers)
    if name == "length":
        return await answer(dialect, LENGTH_CHUNKS, stream, headers)
    if name.startswith("status-"):
        status = int(name.removeprefix("status-"))
        return Response(dialect.error(status, f"scripted {status}"), status, headers, "application/json")
    if name in ("busy-then-text", "overloaded-then-text"):
        if attempt == 1:
            status = 429 if name.startswith("busy") else 529
            retry = {**headers, "retry-after": "0.3"}
            return Response(dialect.error(status, "try again"), status, retry, "application/json")
        return await answer(dialect, TEXT_CHUNKS, stream, headers)
    if name == "error-event":
        return _sse(_paced(dialect.failing(TEXT_CHUNKS[:3], "engine crashed")), headers)
    if name == "failed":  # Responses: `response.failed` alone in a stream, or a failed response answered whole
        events, whole = dialect.failed_response(TEXT_CHUNKS[:3], "out of memory")
        if stream:
            return _sse(_paced(events), headers)
        return Response(whole, media_type="application/json", headers=headers)
    if name == "cut":  # the body ends cleanly before the terminal event
        return _sse(_paced(dialect.events(TEXT_CHUNKS)[:5]), headers)
    if name == "broken":  # the connection breaks mid-body
        return _sse(_broken(dialect.events(TEXT_CHUNKS)[:5]), headers)
    if name == "slow-start":  # nothing at all, not even headers, for 3 s
        await asyncio.sleep(3)
        return await answer(dialect, TEXT_CHUNKS, stream, headers)
    if name == "stall":  # the first event, then silence
        return _sse(_then_forever(dialect.events(TEXT_CHUNKS)[:1], b""), headers)
    if name == "keepalives":  # the first event, then only Anthropic pings or SSE comments
        keepalive = encode_dialect_event(PingEvent()) if dialect.messages else b": keep-alive\n\n"
        return _sse(_then_forever(dialect.events(TEXT_CHUNKS)[:1], keepalive), headers)
    if name == "endless":  # a text delta every 20 ms, never finishing
        opening = dialect.events(TEXT_CHUNKS)[:4]
        return _sse(_then_forever(opening, opening[-1]), headers)
    raise AssertionError(f"unknown scenario {name}")


async def _broken(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    await asyncio.sleep(0.05)
    raise ConnectionAbortedError("scripted break")


async def _then_forever(parts: list[bytes], every: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    while True:
        await asyncio.sleep(0.02)
        if every:
            yield every


class DialectServer:
    """The scripted server and what it saw, per token."""

    def __init__(self) -> None:
        self.tokens: dict[str, TokenState] = {}
        self.url = ""

    def base_url(self, scenario_name: str) -> str:
        token = uuid.uuid4().hex[:10]
        self.tokens[token] = TokenState()
        return f"{self.url}/{scenario_name}/{token}/v1"

    def requests(self, base_url: str) -> list[Seen]:
        return self.tokens[base_url.rstrip("/").split("/")[-2]].requests

    async def _handle(self, request: Request) -> Response:
        name, token, endpoint = (request.path_params[key] for key in ("scenario", "token", "endpoint"))
        body = msgspec.json.decode(await request.body())
        state = self.tokens.setdefault(token, TokenState())
        state.requests.append(Seen(request.url.path, dict(request.headers), body))
        attempt = len(state.requests)
        headers = {"request-id": f"req-{attempt}"}
        return await scenario(name, _Dialect(endpoint, body), attempt, body.get("stream") is True, headers)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{scenario}/{token}/v1/{endpoint}", self._handle, methods=["POST"])])


@contextmanager
def dialect_server() -> Iterator[DialectServer]:
    server = DialectServer()
    config = uvicorn.Config(
        server.app(), host="127.0.0.1", port=0, log_level="critical", lifespan="off", timeout_graceful_shutdown=1
    )
    with run_uvicorn(config, name="dialect-server") as url:
        server.url = url
        yield server
