"""Pooled embeddings from a GGUF model, in a llama.cpp context of their own, on a worker thread of their own.

The chat engine's context and step loop are never touched: an :class:`LlamaEmbedder` loads the model file
again (llama.cpp maps it, so the page cache holds the weights once) and creates a context with
``embeddings`` on and a pooling type: the GGUF's own, or mean pooling when the file names none.

The waiting requests take turns, one input each (so a request of a thousand inputs does not hold up a
request of one), and the embedder's worker evaluates each input as one sequence per decode, clearing the
memory before each; what remains of a request whose client went away is dropped. So a vector never
depends on its company: the same input gives the same bits alone, in a batch, or beside other requests
(tests/engine/test_embeddings.py).

Putting several sequences into one decode would not keep that: on this build llama.cpp's pooled vectors
then change with the other sequences of the decode, far beyond rounding, with flash attention or without
and with a unified cache (with one KV stream per sequence, llama.cpp splits sequences across micro-batches
and pooling sees only a part of each). Nor was such a decode faster on CPU: llama.cpp evaluates a pooled
sequence in a micro-batch of its own either way (see git history for the measurement).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import threading
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import EngineError, RateLimitError
from ..types import EmbeddingRequest, EmbeddingResponse
from ._embedding_request import EmbeddingPlan, embedding_response, normalized, plan_embeddings
from ._llama import LlamaModelHolder, load_model, model_metadata, prefer_spinning_openmp, tokenize_text

__all__ = ["LlamaEmbedder"]

logger = logging.getLogger("chunkwise.engine")

#: Inputs waiting in the queue at most; beyond, a request is refused with a 429 instead of queueing for long.
MAX_WAITING_INPUTS = 16384


@dataclass(slots=True)
class _Input:
    tokens: tuple[int, ...]
    deliver: Callable[[array[float] | BaseException], None]


@dataclass(slots=True)
class _Request:
    """A request's inputs still to decode; ``cancelled`` once nobody waits for them any more."""

    inputs: deque[_Input]
    cancelled: bool = False


def _deliverer(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[array[float]]
) -> Callable[[array[float] | BaseException], None]:
    def settle(result: array[float] | BaseException) -> None:
        if future.done():  # the request was cancelled (its client went away)
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    def deliver(result: array[float] | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result)

    return deliver


class LlamaEmbedder(LlamaModelHolder):
    """Serves ``/v1/embeddings`` from one GGUF file (L2-normalised pooled vectors).

    ``model_id`` is what requests name; ``n_ctx`` the longest input in tokens (by default the model's
    training context, at most 2048). Call :meth:`prepare` and :meth:`embed` from the event loop; the
    decodes run on the embedder's own thread.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        model_id: str,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        verbose: bool = False,
    ) -> None:
        prefer_spinning_openmp()
        import llama_cpp

        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"Embedding model file not found: {path}")
        self._lib: Any = llama_cpp
        self._model_id = model_id
        self._model: Any = load_model(llama_cpp, path, n_gpu_layers=n_gpu_layers, verbose=verbose)
        self._ctx: Any = None
        self._batch: Any = None
        try:
            self._vocab: Any = llama_cpp.llama_model_get_vocab(self._model)
            self._n_vocab: int = llama_cpp.llama_vocab_n_tokens(self._vocab)
            self._dimensions: int = llama_cpp.llama_model_n_embd(self._model)
            train_ctx = llama_cpp.llama_model_n_ctx_train(self._model)
            sequence_ctx = n_ctx if n_ctx is not None else min(train_ctx, 2048)
            params = llama_cpp.llama_context_default_params()
            params.embeddings = True
            params.pooling_type = (
                llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED if self._names_pooling() else llama_cpp.LLAMA_POOLING_TYPE_MEAN
            )
            # One sequence per decode (module docstring), and the longest input fits one micro-batch:
            # pooling (and a non-causal model) needs a sequence whole.
            params.n_seq_max = 1
            params.n_ctx = params.n_batch = params.n_ubatch = sequence_ctx
            threads = n_threads or os.cpu_count() or 1
            params.n_threads = params.n_threads_batch = threads
            params.no_perf = True
            self._ctx = llama_cpp.llama_init_from_model(self._model, params)
            if not self._ctx:
                raise EngineError("llama.cpp could not create an embedding context for the model")
            pooling = llama_cpp.llama_pooling_type(self._ctx)
            if pooling in (llama_cpp.LLAMA_POOLING_TYPE_NONE, llama_cpp.LLAMA_POOLING_TYPE_RANK):
                raise EngineError(f"The model's pooling type ({pooling}) makes no embedding per input")
            self._n_ctx: int = llama_cpp.llama_n_ctx_seq(self._ctx)
            self._bos: int = llama_cpp.llama_vocab_bos(self._vocab)
            self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab)) and self._bos >= 0
            self._eos: int = llama_cpp.llama_vocab_sep(self._vocab)
            self._add_eos = bool(llama_cpp.llama_vocab_get_add_eos(self._vocab)) and self._eos >= 0
            self._encoder_only = bool(
                llama_cpp.llama_model_has_encoder(self._model) and not llama_cpp.llama_model_has_decoder(self._model)
            )
            self._memory: Any = llama_cpp.llama_get_memory(self._ctx)
            self._batch = llama_cpp.llama_batch_init(sequence_ctx, 0, 1)
        except BaseException:
            self._free()
            raise
        self._wakeup = threading.Condition()
        #: The requests with inputs still to decode, in turn order; guarded by ``_wakeup``.
        self._requests: deque[_Request] = deque()
        self._waiting_inputs = 0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="chunkwise-embeddings", daemon=True)
        self._thread.start()

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def tokenize(self, text: str) -> list[int]:
        """An input's tokens: the text as plain text (no special tokens parsed), framed as the model wants."""
        result = tokenize_text(self._lib, self._vocab, text, parse_special=False)
        if self._add_bos:
            result.insert(0, self._bos)
        if self._add_eos:
            result.append(self._eos)
        return result

    def prepare(self, request: EmbeddingRequest) -> EmbeddingPlan:
        """Check and tokenize; raise :class:`~chunkwise.engine.InvalidRequestError` for what cannot be served."""
        return plan_embeddings(
            request,
            tokenize=self.tokenize,
            n_vocab=self._n_vocab,
            context_length=self._n_ctx,
            dimensions=self._dimensions,
        )

    async def embed(self, plan: EmbeddingPlan) -> EmbeddingResponse:
        """The vectors of ``plan``'s inputs, decoded together with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[array[float]]] = [loop.create_future() for _ in plan.inputs]
        with self._wakeup:
            if self._closing:
                raise EngineError("The embedding model is closed")
            if self._waiting_inputs + len(plan.inputs) > MAX_WAITING_INPUTS:
                raise RateLimitError(
                    f"The server is busy: {self._waiting_inputs} embedding inputs are already waiting.",
                    code="queue_full",
                    headers={"Retry-After": "1"},
                )
            inputs = (
                _Input(tokens, _deliverer(loop, future)) for tokens, future in zip(plan.inputs, futures, strict=True)
            )
            request = _Request(deque(inputs))
            self._requests.append(request)
            self._waiting_inputs += len(plan.inputs)
            self._wakeup.notify()
        try:
            vectors = await asyncio.gather(*futures)
        finally:
            with self._wakeup:
                request.cancelled = True  # done, or cancelled: nothing of it is decoded any more
            for future in futures:
                future.cancel()
        return embedding_response(plan, vectors, model=self._model_id)

    def close(self) -> None:
        """Fail what waits, stop the worker, free the model. Idempotent."""
        with self._wakeup:
            if self._closing:
                return
            self._closing = True
            self._wakeup.notify()
        self._thread.join()
        self._free()

    # --- the worker ---------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._requests and not self._closing:
                    self._wakeup.wait()
                if self._closing:
                    waiting = [item for request in self._requests for item in request.inputs]
                    self._requests.clear()
                    break
                request = self._requests.popleft()
                if request.cancelled:
                    self._waiting_inputs -= len(request.inputs)
                    continue
                item = request.inputs.popleft()
                self._waiting_inputs -= 1
                if request.inputs:
                    self._requests.append(request)
            try:
                vector = self._embed(item.tokens)
            except Exception as exc:  # a failed decode fails its input, not the worker
                logger.error("embedding decode failed", exc_info=exc)
                item.deliver(EngineError(f"Embedding failed: {exc}"))
            else:
                item.deliver(vector)
        for item in waiting:
            item.deliver(EngineError("The embedding model is closed"))

    def _embed(self, tokens: tuple[int, ...]) -> array[float]:
        lib, batch = self._lib, self._batch
        if self._memory:
            lib.llama_memory_clear(self._memory, True)
        for position, token in enumerate(tokens):
            batch.token[position] = token
            batch.pos[position] = position
            batch.n_seq_id[position] = 1
            batch.seq_id[position][0] = 0
            batch.logits[position] = True
        batch.n_tokens = len(tokens)
        status = lib.llama_encode(self._ctx, batch) if self._encoder_only else lib.llama_decode(self._ctx, batch)
        if status != 0:
            raise EngineError(f"llama.cpp failed with status {status}")
        pointer = lib.llama_get_embeddings_seq(self._ctx, 0)
        if not pointer:
            raise EngineError("llama.cpp returned no pooled embedding")
        values = ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float * self._dimensions)).contents
        return normalized(values)

    # --- loading ------------------------------------------------------------------------------------

    def _names_pooling(self) -> bool:
        """Whether the GGUF names a pooling type (``<arch>.pooling_type``)."""
        architecture = model_metadata(self._lib, self._model, "general.architecture")
        return (
            architecture is not None
            and model_metadata(self._lib, self._model, f"{architecture}.pooling_type") is not None
        )

    def _free(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        self._free_model()
