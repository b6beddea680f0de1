"""Fixtures for the gateway: real ``chunkwise serve`` upstreams, the scripted fault server, PostgreSQL.

* ``upstream``: the real server on the session's engine, in a uvicorn thread (as in tests/server).
* ``killable_upstream``: a real ``chunkwise serve`` subprocess with its own engine, for tests that kill it.
* ``fault``: tests/client's scripted server, only for faults a real server cannot be made to show on cue
  (a connection reset mid-stream, a 5xx or 429 on the first attempt).
* ``postgres_url``: a throwaway PostgreSQL cluster from Debian's server binaries in a temp dir.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from chunkwise.engine import Embedder, Engine
from chunkwise.gateway import Gateway, GatewayConfig, Store, UpstreamConfig, create_gateway_app, open_store
from chunkwise.gateway._config import DatabaseConfig, GatewaySettings
from chunkwise.gateway._http import GatewayHttpProtocol
from chunkwise.server import ServerSettings, create_app
from tests.client.fault_server import FaultServer
from tests.client.servers import free_port
from tests.server.conftest import RunningServer, run_uvicorn, serve

_T = TypeVar("_T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.timeout(120))


@pytest.fixture(scope="session")
def upstream(engine: Engine, embedder: Embedder) -> Iterator[RunningServer]:
    with serve(create_app(engine, ServerSettings(keepalive_interval=0.2), embedder=embedder)) as running:
        yield running


@dataclass
class KillableUpstream:
    url: str
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def killable_upstream() -> Iterator[KillableUpstream]:
    with serve_process() as upstream:
        yield upstream


@contextmanager
def serve_process(*options: str) -> Iterator[KillableUpstream]:
    """A real ``chunkwise serve`` subprocess with ``options``, once it answers; killed at the end."""
    port = free_port()
    args = [sys.executable, "-m", "chunkwise", "serve", "--port", str(port), "--n-ctx", "512"]
    args += ["--log-level", "warning", "--no-access-log", *options]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"chunkwise serve exited: {log.read().decode()[-2000:]}")
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("chunkwise serve did not start")
                time.sleep(0.2)
            yield KillableUpstream(url, process)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)


@pytest.fixture(scope="session")
def fault() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL cluster on 127.0.0.1 and a free port, removed afterwards.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user (which Debian's
    package creates) and every server command runs through ``runuser``.
    """
    bindir = _postgres_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries are missing; scripts/setup --test installs them")
        pytest.skip("PostgreSQL server binaries are missing (apt-get install postgresql)")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="chunkwise-pg-"))
    if os.getuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data = root / "data"
    port = free_port()
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "gateway", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=100"
    subprocess.run(
        [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [
                *as_user,
                str(bindir.parent / "bin" / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "gateway",
                "ledger",
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://gateway@127.0.0.1:{port}/ledger"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def make_config(database_url: str, upstreams: list[tuple[str, str, list[str]]], **settings: Any) -> GatewayConfig:
    """A config for ``upstreams`` given as ``(name, base URL ending in /v1, models)``."""
    settings.setdefault("health_check_interval", 0.0)
    return GatewayConfig(
        database=DatabaseConfig(database_url),
        upstreams=tuple(UpstreamConfig(name=name, url=url, models=tuple(models)) for name, url, models in upstreams),
        settings=GatewaySettings(**settings),
    )


def with_store(config: GatewayConfig, action: Callable[[Store], Coroutine[Any, Any, _T]]) -> _T:
    """Runs ``action`` against the config's database on a connection of the test's own."""

    async def run() -> _T:
        store = await open_store(config.database, config.settings.limit_window)
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def create_key(config: GatewayConfig, name: str = "test", **limits: Any) -> str:
    return with_store(config, lambda store: store.create_key(name, **limits))[1]


@dataclass
class RunningGateway:
    url: str
    gateway: Gateway
    config: GatewayConfig

    def metric(self, name: str, **labels: str) -> float:
        from tests.server.conftest import read_metric

        return read_metric(httpx.get(f"{self.url}/metrics", timeout=10).text, name, **labels)

    def usage_rows(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The ledger once it holds at least ``count`` rows, all settled (a row opens at admission and is
        settled just after its response)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = with_store(self.config, lambda store: store.usage_rows())
            settled = all(row["outcome"] != "open" for row in rows)
            if (len(rows) >= count and settled) or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)


@contextmanager
def gateway_process(config: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``chunkwise gateway`` as a subprocess on ``port``, once it answers; killed at the end if it still runs
    (a test may stop it its own way first)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "chunkwise", "gateway", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "the gateway exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


@contextmanager
def run_gateway(config: GatewayConfig, port: int = 0) -> Iterator[RunningGateway]:
    """The gateway app under uvicorn on 127.0.0.1 and ``port`` (0: a free one), with its lifespan (database,
    health)."""
    app = create_gateway_app(config)
    server_config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http=GatewayHttpProtocol,  # as `chunkwise gateway` runs it
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    with run_uvicorn(server_config, name="gateway") as url:
        yield RunningGateway(url, app.state.gateway, config)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    url: str = request.getfixturevalue("postgres_url")
    yield url
    # One cluster serves the session: leave it empty for the next test.
    asyncio.run(drop_tables(url))


async def drop_tables(url: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("DROP TABLE IF EXISTS gateway_usage, gateway_keys")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gateway.db'}"
