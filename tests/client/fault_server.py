"""A small, deliberately misbehaving HTTP/1.1 server on a real loopback socket.

It runs raw asyncio in a thread, so a scenario controls every byte and its timing: it can stall,
send keep-alives forever, cut a chunked body short, or reset the connection. The URL picks the
scenario and a token that keeps each test's attempt counts and disconnects apart::

    http://127.0.0.1:PORT/<scenario>/<token>/v1/chat/completions
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

CREATED = 1730000000
MODEL = "fault-model"


def chunk(content: str | None = None, *, role: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


USAGE_CHUNK = {
    "id": "chatcmpl-fault",
    "object": "chat.completion.chunk",
    "created": CREATED,
    "model": MODEL,
    "choices": [],
    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
}

#: The words of the normal answer, one chunk each.
WORDS = ["Hello", ",", " world", "!"]


def event(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def answer_events(*, done: bool = True, usage: bool = True) -> list[bytes]:
    events = [event(chunk(role="assistant", content=""))]
    events += [event(chunk(word)) for word in WORDS]
    events.append(event(chunk(finish="stop")))
    if usage:
        events.append(event(USAGE_CHUNK))
    if done:
        events.append(b"data: [DONE]\n\n")
    return events


COMPLETION = {
    "id": "chatcmpl-fault",
    "object": "chat.completion",
    "created": CREATED,
    "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello, world!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class TokenState:
    requests: list[Request] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)


class Exchange:
    """One request and the means to answer it byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: Request, attempt: int):
        self.reader = reader
        self.writer = writer
        self.request = request
        #: 1 for the first request of this token, 2 for the first retry, ...
        self.attempt = attempt
        self.request_id = f"req-{attempt}"
        #: Whether the connection may serve another request afterwards.
        self.reusable = True

    async def head(self, status: int = 200, headers: dict[str, str] | None = None, *, stream: bool = True) -> None:
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"x-request-id: {self.request_id}"]
        all_headers = {"content-type": "text/event-stream", "cache-control": "no-cache"} if stream else {}
        all_headers.update(headers or {})
        lines += [f"{name}: {value}" for name, value in all_headers.items()]
        lines.append("transfer-encoding: chunked")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()

    async def send(self, data: bytes) -> None:
        """One HTTP chunk."""
        self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await self.writer.drain()

    async def end(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()

    async def respond(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        content_type = {"content-type": "application/json"}
        await self.head(status, {**content_type, **(headers or {})}, stream=False)
        if body:
            await self.send(body)
        await self.end()

    async def cut(self) -> None:
        """Close the connection without ending the chunked body: a truncated response."""
        self.reusable = False
        self.writer.close()

    async def reset(self) -> None:
        """Abort the connection with a TCP RST."""
        self.reusable = False
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def until_disconnect(self, every: float, data: Callable[[int], bytes]) -> None:
        """Send ``data(i)`` (as one HTTP chunk, unless empty) every ``every`` seconds until the client goes away."""
        self.reusable = False
        watcher = asyncio.ensure_future(self.reader.read(1))
        i = 0
        try:
            while not watcher.done():
                payload = data(i)
                if payload:
                    await self.send(payload)
                i += 1
                await asyncio.wait([watcher], timeout=every)
        except ConnectionError:
            pass
        finally:
            watcher.cancel()


Scenario = Callable[[Exchange], Awaitable[None]]


async def ok(x: Exchange) -> None:
    if x.request.method == "GET":
        models = {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "fault"}]}
        await x.respond(200, json.dumps(models).encode())
    elif x.request.json.get("stream"):
        await x.head()
        for data in answer_events():
            await x.send(data)
        await x.end()
    else:
        await x.respond(200, json.dumps(COMPLETION).encode())


async def one_write(x: Exchange) -> None:
    """The whole answer in one HTTP chunk, many events per read."""
    await x.head()
    await x.send(b"".join(answer_events()))
    await x.end()


async def crlf_split(x: Exchange) -> None:
    """CRLF line ends, with every event split across two HTTP chunks inside its CRLF pair."""
    await x.head()
    for data in answer_events():
        data = data.replace(b"\n", b"\r\n")
        await x.send(data[:-1])
        await x.send(data[-1:])
    await x.end()


async def no_done(x: Exchange) -> None:
    """The Atoma proxy's way: keep-alives, chunks, usage, then EOF without [DONE]."""
    await x.head()
    await x.send(b": keep-alive\n\n")
    for data in answer_events(done=False):
        await x.send(data)
    await x.end()


async def truncated(x: Exchange) -> None:
    """A clean end of the body before any finish_reason, usage or [DONE]."""
    await x.head()
    for data in answer_events()[:3]:
        await x.send(data)
    await x.end()


async def cut_short(x: Exchange) -> None:
    """The connection closes in the middle of the chunked body."""
    await x.head()
    for data in answer_events()[:3]:
        await x.send(data)
    await x.cut()


async def reset_mid_stream(x: Exchange) -> None:
    await x.head()
    for data in answer_events()[:3]:
        await x.send(data)
    await asyncio.sleep(0.05)
    await x.reset()


async def reset_twice(x: Exchange) -> None:
    """Reset the connection without answering, twice; then answer."""
    if x.attempt <= 2:
        await x.reset()
    else:
        await ok(x)


async def reset_always(x: Exchange) -> None:
    await x.reset()


async def garbage(x: Exchange) -> None:
    await x.head()
    await x.send(answer_events()[0])
    await x.send(b"data: {this is not json\n\n")
    await x.end()


async def error_mid_stream(x: Exchange) -> None:
    """vLLM's shape: an error frame after some chunks, then [DONE]."""
    await x.head()
    for data in answer_events()[:3]:
        await x.send(data)
    error = {"error": {"message": "engine crashed", "type": "server_error", "param": None, "code": 500}}
    await x.send(event(error))
    await x.send(b"data: [DONE]\n\n")
    await x.end()


async def keepalive_after_first(x: Exchange) -> None:
    """One chunk, then keep-alive comments every 20 ms forever: bytes flow, chunks do not."""
    await x.head()
    await x.send(answer_events()[0])
    await x.until_disconnect(0.02, lambda i: b": keep-alive\n\n")


async def keepalive_only(x: Exchange) -> None:
    await x.head()
    await x.until_disconnect(0.02, lambda i: b": keep-alive\n\n")


async def silent_after_first(x: Exchange) -> None:
    """One chunk, then nothing at all."""
    await x.head()
    await x.send(answer_events()[0])
    await x.until_disconnect(1.0, lambda i: b"")


async def slow_first_byte(x: Exchange) -> None:
    """Nothing at all (not even headers) for 3 s."""
    await asyncio.sleep(3)
    await ok(x)


async def drip(x: Exchange) -> None:
    """The whole (unstreamed) answer, one byte every 20 ms: every read is quick, the answer takes seconds."""
    await x.head(200, {"content-type": "application/json"}, stream=False)
    body = json.dumps(COMPLETION).encode()
    x.reusable = False
    for index in range(len(body)):
        await x.send(body[index : index + 1])
        await asyncio.sleep(0.02)
    await x.end()


async def endless(x: Exchange) -> None:
    """A chunk every 10 ms until the client goes away."""
    await x.head()
    await x.until_disconnect(0.01, lambda i: event(chunk(f" {i}")))


def rate_limited_then_ok(headers: Callable[[], dict[str, str]]) -> Scenario:
    async def scenario(x: Exchange) -> None:
        if x.attempt == 1:
            body = {"error": {"message": "slow down", "type": "rate_limit", "param": None, "code": "TOO_MANY_REQUESTS"}}
            await x.respond(429, json.dumps(body).encode(), headers())
        else:
            await ok(x)

    return scenario


def status(code: int, body: bytes, content_type: str = "application/json") -> Scenario:
    async def scenario(x: Exchange) -> None:
        await x.respond(code, body, {"content-type": content_type})

    return scenario


async def error_json_with_200(x: Exchange) -> None:
    body = {"error": {"message": "model is loading", "type": "server_error", "param": None, "code": None}}
    await x.respond(200, json.dumps(body).encode())


async def unavailable_then_ok(x: Exchange) -> None:
    if x.attempt == 1:
        await x.respond(503, b"upstream unavailable", {"content-type": "text/plain", "retry-after": "0"})
    else:
        await ok(x)


async def data_then_reset_always(x: Exchange) -> None:
    """Every attempt yields data and then breaks: a retry would show up as a second attempt."""
    await reset_mid_stream(x)


SCENARIOS: dict[str, Scenario] = {
    "ok": ok,
    "one_write": one_write,
    "crlf_split": crlf_split,
    "no_done": no_done,
    "truncated": truncated,
    "cut_short": cut_short,
    "reset_mid_stream": reset_mid_stream,
    "reset_twice": reset_twice,
    "reset_always": reset_always,
    "garbage": garbage,
    "error_mid_stream": error_mid_stream,
    "keepalive_after_first": keepalive_after_first,
    "keepalive_only": keepalive_only,
    "silent_after_first": silent_after_first,
    "slow_first_byte": slow_first_byte,
    "drip": drip,
    "endless": endless,
    "retry_after_seconds": rate_limited_then_ok(lambda: {"retry-after": "1"}),
    "retry_after_ms": rate_limited_then_ok(lambda: {"retry-after-ms": "200"}),
    "retry_after_date": rate_limited_then_ok(lambda: {"retry-after": formatdate(time.time() + 2, usegmt=True)}),
    "retry_after_zero": rate_limited_then_ok(lambda: {"retry-after": "0"}),
    "retry_after_hour": rate_limited_then_ok(lambda: {"retry-after": "3600"}),
    "bad_request": status(
        400,
        b'{"error":{"message":"messages: too short","type":"invalid_request_error","param":"messages","code":null}}',
    ),
    "unauthorized": status(401, b'{"error":{"code":"AUTH_ERROR","message":"Authentication failed"}}'),
    "not_found": status(404, b'{"detail":"Not Found"}'),
    "unprocessable": status(422, b'{"error":"Input validation error: `max_tokens` must be positive"}'),
    "server_error_text": status(500, b"Internal Server Error", "text/plain"),
    "teapot": status(418, b"", "text/plain"),
    "error_json_with_200": error_json_with_200,
    "unavailable_then_ok": unavailable_then_ok,
    "data_then_reset_always": data_then_reset_always,
}


class FaultServer:
    """Serve :data:`SCENARIOS` on 127.0.0.1 from a background thread."""

    def __init__(self) -> None:
        self.tokens: dict[str, TokenState] = {}
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-server", daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    def __enter__(self) -> FaultServer:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    def base_url(self, scenario: str) -> str:
        assert scenario in SCENARIOS, scenario
        token = uuid.uuid4().hex[:10]
        self.tokens[token] = TokenState()
        return f"http://127.0.0.1:{self.port}/{scenario}/{token}/v1"

    def state(self, base_url: str) -> TokenState:
        return self.tokens[base_url.rstrip("/").split("/")[-2]]

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        token = ""
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                _, scenario_name, token, *_ = request.path.split("/")
                state = self.tokens.setdefault(token, TokenState())
                state.requests.append(request)
                exchange = Exchange(reader, writer, request, len(state.requests))
                await SCENARIOS[scenario_name](exchange)
                if not exchange.reusable:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if token:
                self.tokens[token].disconnected.set()
            with contextlib.suppress(Exception):
                writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, path, _ = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method, path, headers, body)
