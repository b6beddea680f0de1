"""Fixtures: the real llama.cpp engine on the bundled model, behind real uvicorn servers on loopback.

The engine loads once per session. Every server runs uvicorn in a background thread on a free port;
tests talk to it over TCP with real clients (openai-python, httpx), so streaming, keep-alives and
disconnects happen exactly as in production.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn
from starlette.applications import Starlette

from chunkwise.engine import DEFAULT_MODEL_ID, Embedder, Engine
from chunkwise.server import ServerSettings, create_app, h11_protocol

MODEL = DEFAULT_MODEL_ID
#: Short, so that keep-alive tests do not wait 15 s.
KEEPALIVE_INTERVAL = 0.2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            # A hung stream must fail the test, not the whole CI job.
            item.add_marker(pytest.mark.timeout(120))


@dataclass
class RunningServer:
    url: str
    app: Starlette

    def metric(self, name: str, **labels: str) -> float:
        """The current value of one sample from ``GET /metrics`` (0.0 when it has not been created yet)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return read_metric(text, name, **labels)


def read_metric(exposition: str, name: str, **labels: str) -> float:
    for line in exposition.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        sample_name, _, label_text = sample.partition("{")
        if sample_name != name:
            continue
        found = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if part)
        if all(found.get(key) == f'"{value_}"' for key, value_ in labels.items()):
            return float(value)
    return 0.0


@contextmanager
def run_uvicorn(config: uvicorn.Config, *, name: str, sockets: list[socket.socket] | None = None) -> Iterator[str]:
    """Run a uvicorn server on a thread named ``name`` until the block ends; yields its loopback URL."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def serve(app: Starlette, *, send_buffer: int | None = None) -> Iterator[RunningServer]:
    """Run ``app`` under uvicorn on 127.0.0.1 and a free port until the block ends.

    ``send_buffer`` fixes the kernel send buffer (SO_SNDBUF) of every connection, so that a client that
    stops reading fills the server's buffers after kilobytes instead of megabytes.
    """
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)  # accepted sockets inherit it
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        http=h11_protocol(
            header_timeout=app.state.settings.header_timeout, max_connections=app.state.settings.max_connections
        ),
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    try:
        with run_uvicorn(config, name="uvicorn", sockets=[listener]) as url:
            yield RunningServer(url=url, app=app)
    finally:
        listener.close()


@pytest.fixture(scope="session")
def server(engine: Engine, embedder: Embedder) -> Iterator[RunningServer]:
    settings = ServerSettings(keepalive_interval=KEEPALIVE_INTERVAL)
    with serve(create_app(engine, settings, embedder=embedder)) as running:
        yield running


@pytest.fixture(scope="session")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-checked", max_retries=0, timeout=60) as client:
        yield client
