"""Fixtures shared by every test directory that needs the real engine behind a server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chunkwise.engine import LlamaCppEngine

#: Small enough for a context-overflow test to be cheap, large enough for tool and schema prompts.
N_CTX = 1024


@pytest.fixture(scope="session")
def engine() -> Iterator[LlamaCppEngine]:
    """The bundled model, loaded once per test session; servers in different test files share it."""
    # One thread: the tests share their CPU cores with other jobs, and llama.cpp's spinning thread pool
    # slows down badly when it has fewer cores than threads.
    with LlamaCppEngine(n_ctx=N_CTX, n_threads=1) as loaded:
        yield loaded
