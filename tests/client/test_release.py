"""Connections are released on exit, break, error and garbage collection: the server sees the disconnect.

The ``endless`` scenario sends a chunk every 10 ms until its client goes away, so a stream that was
not released would keep its connection open and the server would never see the disconnect.
"""

from __future__ import annotations

import gc

import anyio
import httpx
import pytest

import chunkwise

from .fault_server import FaultServer
from .harness import MESSAGES

#: Generous for a loaded machine; a leak would never be seen at all.
SEEN_WITHIN = 5.0


class Boom(Exception):
    pass


def _open(client: chunkwise.Client) -> chunkwise.Stream:
    return client.chat.completions.create(model="m", messages=MESSAGES, stream=True)


async def _aopen(client: chunkwise.AsyncClient) -> chunkwise.AsyncStream:
    return await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)


def test_released_on_break(fault_server: FaultServer) -> None:
    base_url = fault_server.base_url("endless")
    with chunkwise.Client(base_url=base_url) as client:
        for index, _ in enumerate(_open(client)):
            if index == 2:
                break
        assert fault_server.state(base_url).disconnected.wait(SEEN_WITHIN)


def test_released_on_error_in_the_loop(fault_server: FaultServer) -> None:
    base_url = fault_server.base_url("endless")
    with chunkwise.Client(base_url=base_url) as client:
        stream = _open(client)
        with pytest.raises(Boom):
            for _ in stream:
                raise Boom
        assert fault_server.state(base_url).disconnected.wait(SEEN_WITHIN)


def test_released_when_the_with_block_ends_unread(fault_server: FaultServer) -> None:
    base_url = fault_server.base_url("endless")
    with chunkwise.Client(base_url=base_url) as client:
        with _open(client):
            pass
        assert fault_server.state(base_url).disconnected.wait(SEEN_WITHIN)


def test_released_on_garbage_collection(fault_server: FaultServer) -> None:
    base_url = fault_server.base_url("endless")
    with chunkwise.Client(base_url=base_url) as client:
        stream = _open(client)
        next(stream)
        del stream
        gc.collect()
        assert fault_server.state(base_url).disconnected.wait(SEEN_WITHIN)


def test_released_on_stream_error(fault_server: FaultServer) -> None:
    # The deadline fires while the server is still sending keep-alives: the client must hang up.
    base_url = fault_server.base_url("keepalive_after_first")
    with chunkwise.Client(base_url=base_url, timeout=chunkwise.Timeouts(idle=0.2)) as client:
        with pytest.raises(chunkwise.IdleTimeoutError):
            list(_open(client))
        assert fault_server.state(base_url).disconnected.wait(SEEN_WITHIN)


def test_a_finished_stream_returns_its_connection_to_the_pool(fault_server: FaultServer) -> None:
    base_url = fault_server.base_url("ok")
    transport = httpx.HTTPTransport()
    with chunkwise.Client(base_url=base_url, transport=transport) as client:
        for _ in range(3):
            with _open(client) as stream:
                stream.final_completion()
            with _open(client) as stream:
                for _ in stream:
                    break
        # Nothing is left checked out of the pool.
        assert all(not connection.is_closed() and connection.is_idle() for connection in transport._pool.connections)


async def _disconnected(fault_server: FaultServer, base_url: str) -> bool:
    return await anyio.to_thread.run_sync(fault_server.state(base_url).disconnected.wait, SEEN_WITHIN)


@pytest.mark.anyio
async def test_async_released_on_break(fault_server: FaultServer) -> None:
    base_url = fault_server.base_url("endless")
    async with chunkwise.AsyncClient(base_url=base_url) as client:
        index = 0
        async for _ in await _aopen(client):
            index += 1
            if index == 3:
                break
        assert await _disconnected(fault_server, base_url)


@pytest.mark.anyio
async def test_async_released_on_error_in_the_loop(fault_server: FaultServer) -> None:
    base_url = fault_server.base_url("endless")
    async with chunkwise.AsyncClient(base_url=base_url) as client:
        stream = await _aopen(client)
        with pytest.raises(Boom):
            async for _ in stream:
                raise Boom
        assert await _disconnected(fault_server, base_url)


@pytest.mark.anyio
async def test_async_released_when_the_with_block_ends_unread(fault_server: FaultServer) -> None:
    base_url = fault_server.base_url("endless")
    async with chunkwise.AsyncClient(base_url=base_url) as client:
        async with await _aopen(client):
            pass
        assert await _disconnected(fault_server, base_url)


@pytest.mark.anyio
async def test_async_released_on_garbage_collection(fault_server: FaultServer) -> None:
    base_url = fault_server.base_url("endless")
    async with chunkwise.AsyncClient(base_url=base_url) as client:
        stream = await _aopen(client)
        await anext(stream)
        del stream
        gc.collect()
        assert await _disconnected(fault_server, base_url)
