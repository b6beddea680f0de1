"""Fixtures for the engine tests; the engines themselves (``engine``, ``small_engine``) are in tests/conftest.py."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"
