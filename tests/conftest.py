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
    with LlamaCppEngine(n_ctx=N_CTX) as loaded:
        yield loaded
