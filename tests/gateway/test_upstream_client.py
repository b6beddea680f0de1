"""The proxied requests' HTTP/1.1 client against scripted upstreams.

The upstreams here are raw TCP servers that write exact bytes: broken framing, a connection dropped at a
chosen moment or a server that goes silent cannot be made on demand with a real OpenAI-compatible server.
The gateway tests run the same client against real `chunkwise serve` upstreams.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from chunkwise.gateway._upstream import Origin, UpstreamClient, UpstreamError

pytestmark = pytest.mark.anyio

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[tuple[Origin, list[int]]]:
    """A server running ``script`` for every connection; yields its origin and a count of connections."""
    connections = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        try:
            await script(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield Origin(f"http://127.0.0.1:{port}/v1", {"content-type": "application/json"}), connections


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


def client(read_timeout: float = 5.0) -> UpstreamClient:
    return UpstreamClient(connect_timeout=5.0, read_timeout=read_timeout)


async def test_a_chunked_stream_arrives_decoded_and_the_connection_is_kept_for_the_next_request() -> None:
    requests: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                requests.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            for event in (b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"):
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")

    async with scripted(script) as (origin, connections):
        upstream = client()
        for _ in range(2):
            response = await upstream.post(origin, "/chat/completions", b'{"stream":true}')
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            assert await response.aread() == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
            await response.aclose()
        await upstream.aclose()
    assert connections[0] == 1
    assert requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:")
    assert requests[0].endswith(b"content-length: 15\r\n\r\n" + b'{"stream":true}')


async def test_a_kept_connection_the_upstream_closed_is_replaced_without_an_error() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        # Then the upstream drops the idle connection, as servers do after their keep-alive timeout.

    async with scripted(script) as (origin, connections):
        upstream = client()
        for _ in range(3):
            response = await upstream.post(origin, "/chat/completions", b"{}")
            assert await response.aread() == b"{}"
            await response.aclose()
            await asyncio.sleep(0.05)
        await upstream.aclose()
    assert connections[0] == 3


async def test_a_body_without_a_length_ends_with_the_connection() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n")
        writer.write(b'{"error": "busy"}')

    async with scripted(script) as (origin, _):
        response = await client().post(origin, "/chat/completions", b"{}")
        assert response.status_code == 503
        assert await response.aread() == b'{"error": "busy"}'
        await response.aclose()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"SMTP ready\r\n\r\n", "invalid HTTP"),
        (b"", "closed the connection"),
    ],
)
async def test_no_valid_answer_is_an_upstream_error(answer: bytes, message: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)

    async with scripted(script) as (origin, _):
        with pytest.raises(UpstreamError, match=message):
            await client().post(origin, "/chat/completions", b"{}")


async def test_a_stream_cut_mid_body_and_a_silent_upstream_are_upstream_errors() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n")

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await asyncio.sleep(5)

    async with scripted(cut) as (origin, _):
        response = await client().post(origin, "/chat/completions", b"{}")
        pieces = response.aiter_raw()
        assert await pieces.__anext__() == b"data: 1\n\n"
        with pytest.raises(UpstreamError, match="closed the connection"):
            await pieces.__anext__()
        await response.aclose()
    async with scripted(silent) as (origin, _):
        response = await client(read_timeout=0.2).post(origin, "/chat/completions", b"{}")
        with pytest.raises(UpstreamError, match="sent nothing for 0.2 s"):
            await response.aread()
        await response.aclose()


async def test_an_unreachable_upstream_is_an_upstream_error() -> None:
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(UpstreamError, match="ConnectionRefusedError"):
        await client().post(Origin(f"http://127.0.0.1:{port}/v1", {}), "/chat/completions", b"{}")
