"""Fixtures for confidential and signed answers: real servers on loopback, and a scripted man in the middle.

The servers run the real engine in-process under uvicorn (the session's shared engine). The man in the
middle is a second loopback server that relays every request to the real one, then rewrites what comes
back (the lock answer, a JSON body, or the events of a stream) with a :class:`Tamper` the test chooses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from chunkwise.confidential import NodeKey
from chunkwise.engine._protocol import Engine
from chunkwise.server import ServerSettings, create_app
from chunkwise.signing import Signer
from tests.server.conftest import RunningServer, run_uvicorn, serve

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "Name three colours."}]
GREEDY: dict[str, Any] = {"max_tokens": 12, "temperature": 0.0, "seed": 1}

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.timeout(120))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer()


@pytest.fixture(scope="session")
def node_key() -> NodeKey:
    return NodeKey()


@pytest.fixture(scope="session")
def signed_server(engine: Engine, signer: Signer, node_key: NodeKey) -> Iterator[RunningServer]:
    """A server that signs and chains every answer."""
    with serve(create_app(engine, ServerSettings(signer=signer, node_key=node_key))) as running:
        yield running


@pytest.fixture(scope="session")
def unsigned_server(engine: Engine) -> Iterator[RunningServer]:
    """A server without a signing key (its confidential answers are still chained inside the encryption)."""
    with serve(create_app(engine, ServerSettings())) as running:
        yield running


@contextmanager
def serve_asgi(app: ASGIApp) -> Iterator[str]:
    """Run an ASGI app that is not a chunkwise server (the relay, a fake node) on a free loopback port."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", ws="none", lifespan="on", timeout_graceful_shutdown=2
    )
    with run_uvicorn(config, name="uvicorn-test-app") as url:
        yield url


@dataclass
class Tamper:
    """What the man in the middle does; each hook gets what the server sent and returns what the client sees."""

    lock: Callable[[bytes], bytes] = lambda body: body
    body: Callable[[bytes], bytes] = lambda body: body
    events: Callable[[list[bytes]], list[bytes]] = lambda events: events
    #: Every stream relayed so far, as its list of events (for replays across streams).
    streams: list[list[bytes]] = field(default_factory=list)


class ManInTheMiddle:
    """An ASGI app relaying to ``upstream`` through the current :attr:`tamper`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.tamper = Tamper()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {
            name.decode(): value.decode() for name, value in scope["headers"] if name in (b"content-type", b"accept")
        }
        async with httpx.AsyncClient(timeout=60) as http:
            answer = await http.request(scope["method"], self.upstream + scope["path"], content=body, headers=headers)
        content = answer.content
        content_type = answer.headers.get("content-type", "")
        if answer.status_code == 200 and scope["path"].endswith("/nodes/lock"):
            content = self.tamper.lock(content)
        elif answer.status_code == 200 and content_type.startswith("text/event-stream"):
            events = [event for event in content.split(b"\n\n") if event]
            self.tamper.streams.append(list(events))
            content = b"".join(event + b"\n\n" for event in self.tamper.events(events))
        elif answer.status_code == 200:
            content = self.tamper.body(content)
        await send(
            {
                "type": "http.response.start",
                "status": answer.status_code,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(content)).encode()),
                    (b"x-request-id", answer.headers.get("x-request-id", "").encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


@pytest.fixture(scope="session")
def _signed_mitm(signed_server: RunningServer) -> Iterator[tuple[ManInTheMiddle, str]]:
    relay = ManInTheMiddle(signed_server.url)
    with serve_asgi(relay) as url:
        yield relay, url


@pytest.fixture
def mitm(_signed_mitm: tuple[ManInTheMiddle, str]) -> Iterator[tuple[ManInTheMiddle, str]]:
    """The man in the middle in front of the signed server, with a fresh (harmless) tamper per test."""
    relay, url = _signed_mitm
    relay.tamper = Tamper()
    yield relay, url
    relay.tamper = Tamper()
