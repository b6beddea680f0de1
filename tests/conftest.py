"""Fixtures shared by every test directory that needs the real engine, and the rule that keeps `-m engine` true.

The bundled model loads once per test run (:func:`engine`), with the engine's default context, which the engine
tests check; :func:`small_engine` is the one other configuration, for filling a context or the engine quickly.
Tests that need a fresh engine (determinism against a cold cache, a one-sequence engine) still build their own.

Every test that loads the model carries the ``engine`` marker, so ``-m "not engine"`` runs none that does: the
marker is added to every test that uses a fixture of :data:`MODEL_FIXTURES`, and a test without it that builds
a :class:`~chunkwise.engine.LlamaCppEngine` on a model file fails with a message saying so.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chunkwise.engine import DEFAULT_MODEL_ID, LlamaCppEngine, LlamaEmbedder, default_model_path

#: The engine fixture's context per sequence: the engine's default (the training context capped at 2048).
N_CTX = 2048

#: Fixtures that load the model, in this process or in a server process they start.
MODEL_FIXTURES = frozenset({"engine", "small_engine", "embedder", "killable_upstream"})

#: The embedder fixture's longest input, in tokens: short, so that the context check is quick to reach.
EMBEDDING_CTX = 512

#: The test now running, while it is set up, run and torn down.
_running: list[pytest.Item] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if MODEL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engine)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()


def _loads_a_model(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    path = args[0] if args else kwargs.get("model_path")
    return path is None or Path(path).is_file()


def _require_the_engine_marker(init: Any) -> Any:
    @functools.wraps(init)
    def guarded(self: LlamaCppEngine, *args: Any, **kwargs: Any) -> None:
        test = _running[-1] if _running else None
        if test is not None and test.get_closest_marker("engine") is None and _loads_a_model(args, kwargs):
            pytest.fail(f"{test.nodeid} loads the model but is not marked `engine` (pytest.mark.engine)")
        init(self, *args, **kwargs)

    return guarded


def pytest_configure(config: pytest.Config) -> None:
    LlamaCppEngine.__init__ = _require_the_engine_marker(LlamaCppEngine.__init__)  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def engine() -> Iterator[LlamaCppEngine]:
    """The bundled model, loaded once per test run; the engine tests and every server share it."""
    # One thread: the tests share their CPU cores with other jobs, and llama.cpp's spinning thread pool
    # slows down badly when it has fewer cores than threads.
    with LlamaCppEngine(n_threads=1) as loaded:
        assert loaded.context_length == N_CTX
        yield loaded


@pytest.fixture(scope="session")
def small_engine() -> Iterator[LlamaCppEngine]:
    """Two sequences of 256 cells (llama.cpp's smallest): a full context and a full engine are quick to reach."""
    with LlamaCppEngine(n_ctx=256, n_threads=1, max_sequences=2) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def embedder() -> Iterator[LlamaEmbedder]:
    """The bundled model's pooled embeddings, in their own context and thread, shared like :func:`engine`."""
    with LlamaEmbedder(default_model_path(), model_id=DEFAULT_MODEL_ID, n_ctx=EMBEDDING_CTX, n_threads=1) as loaded:
        yield loaded
