"""Model engines: the :class:`Engine` protocol and the embedded llama.cpp engine.

Importing this package does not import llama.cpp; constructing a :class:`LlamaCppEngine` does.

How :class:`LlamaCppEngine` honours a request:

* ``messages`` go through the GGUF's own chat template; ``tools`` are described in the system prompt.
* ``temperature``/``top_p``/``seed``, ``presence_penalty``/``frequency_penalty`` (over the generated
  tokens) and ``logit_bias`` are stages of llama.cpp's C sampler chain; temperature 0 is greedy.
* Every running sequence of every request shares each decode step (continuous batching); ``n`` > 1
  evaluates the prompt once and copies it to the other sequences. Greedy output does not depend on the
  company a request keeps nor on the prefix cache.
* ``stop`` is matched on the text stream, holding back only what could still become a stop string.
* ``response_format`` and forced tool calls (``required`` or a named tool) are llama.cpp grammars.
  ``tool_choice: auto`` constrains only the first token (a call starts with ``{``, text cannot); text then
  continues unconstrained. One call per choice; ``parallel_tool_calls`` never yields more than one.
* ``logprobs`` are the raw model log-probabilities (before bias, penalties and temperature).
* ``completion_tokens`` counts generated tokens delivered to the consumer, not the end-of-generation token.

:class:`LlamaEmbedder` serves ``/v1/embeddings`` from the same GGUF (or another) in a context and on a
thread of its own, so embeddings never slow a chat's decode steps; see :mod:`._embedding`.

Example::

    engine = LlamaCppEngine()  # the bundled SmolLM2-135M-Instruct
    generation = engine.prepare_chat(request, request_id="chatcmpl-1", created=int(time.time()))
    async for chunk in generation.stream():
        ...
"""

from __future__ import annotations

from ._batching import BatchingHistogram, BatchingStats
from ._bundled import DEFAULT_MODEL_ID, default_model_path
from ._embedding import LlamaEmbedder
from ._embedding_request import MAX_EMBEDDING_INPUTS, EmbeddingPlan
from ._generation import LlamaGeneration
from ._llama import LlamaCppEngine
from ._protocol import (
    BatchingEngine,
    Embedder,
    EmbeddingJob,
    Engine,
    Generation,
    InvalidRequestError,
    StreamOnce,
    TextGeneration,
    TokenizingEngine,
    generation_usage,
    usage_chunk,
)

__all__ = [
    "BatchingEngine",
    "BatchingHistogram",
    "BatchingStats",
    "DEFAULT_MODEL_ID",
    "Embedder",
    "EmbeddingJob",
    "EmbeddingPlan",
    "Engine",
    "Generation",
    "InvalidRequestError",
    "LlamaCppEngine",
    "LlamaEmbedder",
    "LlamaGeneration",
    "MAX_EMBEDDING_INPUTS",
    "StreamOnce",
    "TextGeneration",
    "TokenizingEngine",
    "default_model_path",
    "generation_usage",
    "usage_chunk",
]
