"""Fixtures for the client tests: a clean environment and the misbehaving loopback server.

The servers with a real model (llama-cpp-python's and ``chunkwise serve``) are started by the test
modules that use them, as subprocesses, so a test run that deselects them never loads the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chunkwise.client._config import API_KEY_VARIABLES, BASE_URL_VARIABLE

from .fault_server import FaultServer

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(_HERE):
            # A client that hangs must fail its test, not the whole run.
            item.add_marker(pytest.mark.timeout(60))


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (BASE_URL_VARIABLE, *API_KEY_VARIABLES):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def fault_server() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server
