"""Guards for the code that leans on other libraries' internals: each fails loudly when the library changes.

Each workaround also has an upper version bound in pyproject.toml, so an upgrade is a decision: raise the
bound, run these tests, and fix the workaround if one fails.

* ``chunkwise.server.h11_protocol`` subclasses uvicorn's ``H11Protocol`` (header timeout, error-shaped 400s);
  bound ``uvicorn<0.56``.
* ``chunkwise.gateway.GatewayHttpProtocol`` subclasses uvicorn's ``HttpToolsProtocol`` and wraps the transport
  it is given, relying on uvicorn writing a response head as a write of its own; bound ``uvicorn<0.56``.
* The client's ``LiveTransportTimeouts`` relies on httpcore reading the ``read`` timeout with ``.get`` once
  as it starts reading the headers and once as it starts reading the body; bound ``httpcore<1.1``.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from chunkwise.gateway import GatewayHttpProtocol
from chunkwise.server import h11_protocol
from tests.server.conftest import run_uvicorn

pytestmark = pytest.mark.timeout(60)

BODY = b"data: 1\n\n"


async def streaming_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await send({"type": "http.response.body", "body": BODY, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


@contextmanager
def uvicorn_on(http: type[Any]) -> Iterator[tuple[str, int]]:
    config = uvicorn.Config(
        streaming_app, host="127.0.0.1", port=0, log_level="warning", http=http, ws="none", lifespan="off"
    )
    with run_uvicorn(config, name="workaround-guard") as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


# --- uvicorn's H11Protocol -------------------------------------------------------------------------------


def test_uvicorns_h11_protocol_has_the_hooks_and_state_the_hardened_protocol_uses() -> None:
    for hook in ("connection_made", "connection_lost", "on_response_complete", "send_400_response"):
        assert callable(getattr(H11Protocol, hook, None)), f"uvicorn's H11Protocol lost {hook}"
    assert list(inspect.signature(H11Protocol.send_400_response).parameters) == ["self", "msg"]
    # Read by the header timer: the h11 connection, the current cycle, the transport and the loop.
    source = inspect.getsource(H11Protocol)
    for state in ("self.conn = h11.Connection", "self.cycle", "self.transport = transport", "self.loop ="):
        assert state in source, f"uvicorn's H11Protocol no longer sets {state}"
    assert "self.response_complete = " in inspect.getsource(RequestResponseCycle)


def test_the_hardened_h11_protocol_times_out_half_sent_headers_and_answers_bad_requests_in_the_error_shape() -> None:
    with uvicorn_on(h11_protocol(header_timeout=0.3)) as (host, port):
        with socket.create_connection((host, port), timeout=10) as connection:
            connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            assert connection.recv(1024) == b"", "the half-sent request was not closed"
            assert time.monotonic() - started < 5
        with socket.create_connection((host, port), timeout=10) as connection:
            connection.sendall(b"NOT A REQUEST\r\n\r\n")
            answer = b""
            while chunk := connection.recv(4096):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400")
        assert msgspec.json.decode(body)["error"]["code"] == "invalid_http_request"


# --- uvicorn's HttpToolsProtocol ------------------------------------------------------------------------


class RecordingTransport(asyncio.Transport):
    """The socket's side of the protocol: records each write as uvicorn (through the wrapper) makes it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_uvicorns_httptools_protocol_writes_the_head_on_its_own_so_the_gateway_can_join_it_to_the_body(
    anyio_backend: str,
) -> None:
    assert issubclass(GatewayHttpProtocol, HttpToolsProtocol)
    config = uvicorn.Config(streaming_app, log_level="warning", http=GatewayHttpProtocol, ws="none", lifespan="off")
    config.load()
    for protocol_class, joined in ((HttpToolsProtocol, False), (GatewayHttpProtocol, True)):
        transport = RecordingTransport()
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        protocol.connection_made(transport)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(20):
            await asyncio.sleep(0)
        head = transport.writes[0]
        assert head.startswith(b"HTTP/1.1 200"), transport.writes
        # uvicorn alone writes the head by itself (what the gateway's wrapper holds back); wrapped, it leaves
        # with the first body bytes.
        assert (BODY in head) is joined, transport.writes
        protocol.connection_lost(None)


# --- httpcore's read timeout lookups --------------------------------------------------------------------


class RecordingTimeouts(dict[str, float | None]):
    def __init__(self) -> None:
        super().__init__(connect=10.0, read=10.0, write=10.0, pool=10.0)
        self.read_lookups = 0

    def get(self, key: str, default: float | None = None) -> float | None:  # type: ignore[override]
        if key == "read":
            self.read_lookups += 1
        return super().get(key, default)


def test_httpcore_looks_the_read_timeout_up_with_get_when_headers_and_then_the_body_start() -> None:
    with uvicorn_on(h11_protocol(header_timeout=10)) as (host, port), httpx.Client() as client:
        timeouts = RecordingTimeouts()
        request = client.build_request("GET", f"http://{host}:{port}/")
        request.extensions["timeout"] = timeouts
        response = client.send(request, stream=True)
        try:
            assert timeouts.read_lookups == 1, "httpcore did not read the timeout once for the headers"
            assert response.read() == BODY
            assert timeouts.read_lookups == 2, "httpcore did not read the timeout again as the body started"
        finally:
            response.close()
