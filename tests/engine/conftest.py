"""Fixtures for the engine tests: the real llama.cpp engine on the bundled model, loaded once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chunkwise.engine import LlamaCppEngine


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def engine() -> Iterator[LlamaCppEngine]:
    # One thread: the tests share their CPU cores with other jobs, and llama.cpp's spinning thread pool
    # slows down badly when it has fewer cores than threads.
    with LlamaCppEngine(n_threads=1) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def small_engine() -> Iterator[LlamaCppEngine]:
    """A tiny context, for filling it up quickly."""
    with LlamaCppEngine(n_ctx=256, n_threads=1, max_sequences=2) as loaded:
        yield loaded
