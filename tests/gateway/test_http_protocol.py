"""The gateway's uvicorn protocol sends a response's head in the same write as its first body bytes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chunkwise.gateway._http import _HeadWithBodyTransport

pytestmark = pytest.mark.anyio

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
BODY = b"9\r\ndata: 1\n\n\r\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordingTransport:
    """Stands in for the socket transport: the test is about which writes reach it, in what pieces."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return f"info:{name}"


def wrapped() -> tuple[_HeadWithBodyTransport, RecordingTransport]:
    inner = RecordingTransport()
    return _HeadWithBodyTransport(inner, asyncio.get_running_loop()), inner  # type: ignore[arg-type]


async def test_the_head_leaves_with_the_first_body_bytes() -> None:
    transport, inner = wrapped()
    transport.write(HEAD)
    transport.write(BODY)
    transport.write(b"0\r\n\r\n")
    assert inner.writes == [HEAD + BODY, b"0\r\n\r\n"]


async def test_a_head_alone_leaves_at_the_end_of_the_loop_turn_or_on_close() -> None:
    transport, inner = wrapped()
    transport.write(HEAD)
    assert inner.writes == []
    await asyncio.sleep(0)
    assert inner.writes == [HEAD]
    transport.write(HEAD)
    transport.close()
    assert inner.writes == [HEAD, HEAD] and inner.closed


async def test_everything_else_is_the_wrapped_transport() -> None:
    transport, inner = wrapped()
    transport.write(b"not a head")
    assert inner.writes == [b"not a head"]
    assert transport.get_extra_info("peername") == "info:peername"
