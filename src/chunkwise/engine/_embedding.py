"""Pooled embeddings from a GGUF model, in a llama.cpp context of their own, on a worker thread of their own.

The chat engine's context and step loop are never touched: an :class:`LlamaEmbedder` loads the model file
again (llama.cpp maps it, so the page cache holds the weights once) and creates a context with
``embeddings`` on. The pooling is the GGUF's own, or mean pooling when the file names none.

The waiting requests take turns, one input each (so a request of a thousand inputs does not hold up a
request of one), into groups of up to ``max_sequences`` inputs; the worker evaluates a group together,
in as few ``llama_decode`` calls as the rules below allow, each input a sequence with a KV stream of its
own, and pools each sequence's token
vectors itself. What remains of a request whose client went away is dropped.

A vector never depends on its company: the same input gives the same bits alone, in a group, or beside
other requests (tests/engine/test_embeddings.py). Three choices keep that on this build of llama.cpp:

* each sequence has its own KV stream (``kv_unified`` off): in one unified cache the attention sums
  change with where the other sequences' cells lie;
* llama.cpp returns every token's vector (pooling ``none``) and the pooling happens here, token after
  token: llama.cpp's own pooling sums over a whole micro-batch, so its rounding changes with the company;
* a group is decoded in steps (:func:`next_step`) whose inputs all advance by the same number of tokens,
  so that llama.cpp never cuts them further, and never by one token alone (a one-token piece of a longer
  input is evaluated another way, as is a short piece with flash attention, which is therefore off).

A model that is not a causal decoder (an encoder, or attention that looks ahead) needs each sequence whole
in one micro-batch: it gets one input per decode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import EngineError, RateLimitError
from ..types import EmbeddingRequest, EmbeddingResponse
from ._embedding_request import EmbeddingPlan, embedding_response, normalized, plan_embeddings
from ._llama import LlamaModelHolder, load_model, model_metadata, prefer_spinning_openmp, tokenize_text

__all__ = ["LlamaEmbedder"]

logger = logging.getLogger("chunkwise.engine")

#: Inputs waiting in the queue at most; beyond, a request is refused with a 429 instead of queueing for long.
MAX_WAITING_INPUTS = 16384

#: Inputs evaluated in one decode at most, by default. Each has a KV stream as long as the longest input,
#: so the embedding context holds this many times :attr:`LlamaEmbedder.context_length` cells.
DEFAULT_EMBEDDING_SEQUENCES = 8


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


def next_step(remaining: list[int], limit: int) -> tuple[list[int], int]:
    """The next decode of a group: which inputs (by index) advance, and by how many tokens each.

    ``remaining`` holds each input's tokens still to evaluate; a step carries at most ``limit`` tokens, and
    no input is longer. All inputs of a step advance by the same count, so llama.cpp keeps the step in one
    micro-batch. A piece of one token is evaluated another way than a longer one, so an input is never
    cut into a piece of one token: one-token inputs go in steps of their own, and an input that the step
    would leave with one token waits for the next step.
    """
    active = [index for index, left in enumerate(remaining) if left > 0]
    piece = min(remaining[index] for index in active)
    if piece == 1:
        members = [index for index in active if remaining[index] == 1]
    else:
        members = [index for index in active if remaining[index] == piece or remaining[index] >= piece + 2]
    # The inputs that finish in this step first, then the others, as many as the limit allows.
    members.sort(key=lambda index: remaining[index] != piece)
    return members[: max(1, limit // piece)], piece


class LlamaEmbedder(LlamaModelHolder):
    """Serves ``/v1/embeddings`` from one GGUF file (L2-normalised pooled vectors).

    ``model_id`` is what requests name; ``n_ctx`` the longest input in tokens (by default the model's
    training context, at most 2048); ``max_sequences`` the inputs evaluated in one decode at most. Call
    :meth:`prepare` and :meth:`embed` from the event loop; the decodes run on the embedder's own thread.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        model_id: str,
        n_ctx: int | None = None,
        max_sequences: int = DEFAULT_EMBEDDING_SEQUENCES,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        verbose: bool = False,
    ) -> None:
        prefer_spinning_openmp()
        import llama_cpp

        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"Embedding model file not found: {path}")
        if max_sequences < 1:
            raise EngineError("max_sequences must be at least 1")
        self._lib: Any = llama_cpp
        self._model_id = model_id
        self._model: Any = load_model(llama_cpp, path, n_gpu_layers=n_gpu_layers, verbose=verbose)
        self._ctx: Any = None
        self._batch: Any = None
        self._threads = n_threads or os.cpu_count() or 1
        try:
            self._vocab: Any = llama_cpp.llama_model_get_vocab(self._model)
            self._n_vocab: int = llama_cpp.llama_vocab_n_tokens(self._vocab)
            self._dimensions: int = llama_cpp.llama_model_n_embd_out(self._model)
            self._pooling = self._model_pooling()
            poolings = (
                llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                llama_cpp.LLAMA_POOLING_TYPE_CLS,
                llama_cpp.LLAMA_POOLING_TYPE_LAST,
            )
            if self._pooling not in poolings:
                raise EngineError(f"The model's pooling type ({self._pooling}) makes no embedding per input")
            train_ctx = llama_cpp.llama_model_n_ctx_train(self._model)
            sequence_ctx = n_ctx if n_ctx is not None else min(train_ctx, 2048)
            self._encoder_only = bool(
                llama_cpp.llama_model_has_encoder(self._model) and not llama_cpp.llama_model_has_decoder(self._model)
            )
            self._ctx = self._context(sequence_ctx, max_sequences)
            if max_sequences > 1 and not self._is_causal_decoder():
                llama_cpp.llama_free(self._ctx)
                self._ctx = None
                self._ctx = self._context(sequence_ctx, 1)
            self._max_sequences: int = llama_cpp.llama_n_seq_max(self._ctx)
            self._n_ctx: int = llama_cpp.llama_n_ctx_seq(self._ctx)
            self._bos: int = llama_cpp.llama_vocab_bos(self._vocab)
            self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab)) and self._bos >= 0
            self._eos: int = llama_cpp.llama_vocab_sep(self._vocab)
            self._add_eos = bool(llama_cpp.llama_vocab_get_add_eos(self._vocab)) and self._eos >= 0
            self._memory: Any = llama_cpp.llama_get_memory(self._ctx)
            self._batch = llama_cpp.llama_batch_init(self._n_ctx, 0, 1)
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

    @property
    def max_sequences(self) -> int:
        """The inputs evaluated in one decode at most (1 for a model that is not a causal decoder)."""
        return self._max_sequences

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
                group = self._next_group()
            if not group:
                continue
            try:
                vectors = self._embed([item.tokens for item in group])
            except Exception as exc:  # a failed decode fails its inputs, not the worker
                logger.error("embedding decode failed", exc_info=exc)
                for item in group:
                    item.deliver(EngineError(f"Embedding failed: {exc}"))
            else:
                for item, vector in zip(group, vectors, strict=True):
                    item.deliver(vector)
        for item in waiting:
            item.deliver(EngineError("The embedding model is closed"))

    def _next_group(self) -> list[_Input]:
        """Up to ``max_sequences`` inputs, the waiting requests taking turns one input each; under ``_wakeup``."""
        group: list[_Input] = []
        while self._requests and len(group) < self._max_sequences:
            request = self._requests.popleft()
            if request.cancelled:
                self._waiting_inputs -= len(request.inputs)
                continue
            group.append(request.inputs.popleft())
            self._waiting_inputs -= 1
            if request.inputs:
                self._requests.append(request)
        return group

    def _embed(self, inputs: list[tuple[int, ...]]) -> list[array[float]]:
        """The vectors of ``inputs``, evaluated together in the steps that :func:`next_step` chooses."""
        lib, batch = self._lib, self._batch
        if self._memory:
            lib.llama_memory_clear(self._memory, True)
        remaining = [len(tokens) for tokens in inputs]
        totals = [np.zeros(self._dimensions, dtype=np.float64) for _ in inputs]
        while any(remaining):
            members, piece = next_step(remaining, self._n_ctx)
            count = 0
            for sequence in members:
                tokens = inputs[sequence]
                start = len(tokens) - remaining[sequence]
                for position in range(start, start + piece):
                    batch.token[count] = tokens[position]
                    batch.pos[count] = position
                    batch.n_seq_id[count] = 1
                    batch.seq_id[count][0] = sequence
                    batch.logits[count] = True
                    count += 1
            batch.n_tokens = count
            status = lib.llama_encode(self._ctx, batch) if self._encoder_only else lib.llama_decode(self._ctx, batch)
            if status != 0:
                raise EngineError(f"llama.cpp failed with status {status}")
            pointer = lib.llama_get_embeddings(self._ctx)
            if not pointer:
                raise EngineError("llama.cpp returned no token embeddings")
            rows: npt.NDArray[np.float32] = np.ctypeslib.as_array(pointer, shape=(count, self._dimensions))
            for offset, sequence in enumerate(members):
                start = len(inputs[sequence]) - remaining[sequence]
                remaining[sequence] -= piece
                self._pool(totals[sequence], rows[offset * piece : (offset + 1) * piece], start, remaining[sequence])
        mean = self._pooling == lib.LLAMA_POOLING_TYPE_MEAN
        return [
            normalized((total / len(tokens) if mean else total).tolist())
            for total, tokens in zip(totals, inputs, strict=True)
        ]

    def _pool(self, total: npt.NDArray[np.float64], rows: npt.NDArray[np.float32], start: int, left: int) -> None:
        """Add a piece of an input's token vectors to its pooled ``total``: the first token's (CLS), the last
        token's, or all of them (mean), one token after another, so that the sum's rounding never depends
        on how the input was cut into pieces."""
        lib = self._lib
        if self._pooling == lib.LLAMA_POOLING_TYPE_CLS:
            if start == 0:
                total += rows[0]
        elif self._pooling == lib.LLAMA_POOLING_TYPE_LAST:
            if left == 0:
                total += rows[-1]
        else:
            for row in rows:
                total += row

    # --- loading ------------------------------------------------------------------------------------

    def _model_pooling(self) -> int:
        """The GGUF's pooling type (``<arch>.pooling_type``), else mean pooling."""
        architecture = model_metadata(self._lib, self._model, "general.architecture")
        named = None if architecture is None else model_metadata(self._lib, self._model, f"{architecture}.pooling_type")
        if named is None:
            return int(self._lib.LLAMA_POOLING_TYPE_MEAN)
        try:
            return int(named)
        except ValueError:
            raise EngineError(f"The model names an unknown pooling type: {named!r}") from None

    def _context(self, sequence_ctx: int, sequences: int) -> Any:
        """An embedding context: ``sequences`` KV streams of ``sequence_ctx`` cells, every token's vector out."""
        lib = self._lib
        params = lib.llama_context_default_params()
        params.embeddings = True
        params.pooling_type = lib.LLAMA_POOLING_TYPE_NONE  # pooled here (module docstring)
        params.n_seq_max = sequences
        params.kv_unified = False
        params.n_ctx = sequences * sequence_ctx
        # One step (:func:`next_step`) is one micro-batch, and holds the longest input whole, which a model
        # that is not causal needs.
        params.n_batch = params.n_ubatch = sequence_ctx
        params.n_threads = params.n_threads_batch = self._threads
        params.no_perf = True
        # llama.cpp's flash attention evaluates a short piece of a sequence another way than a long one.
        params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        context = lib.llama_init_from_model(self._model, params)
        if not context:
            raise EngineError("llama.cpp could not create an embedding context for the model")
        return context

    def _is_causal_decoder(self) -> bool:
        """Whether a token sees only the tokens before it, through the KV cache (so a sequence may be split)."""
        lib = self._lib
        return bool(
            lib.llama_get_causal_attn(self._ctx)
            and lib.llama_get_memory(self._ctx)
            and not self._encoder_only
            and not lib.llama_model_is_recurrent(self._model)
            and not lib.llama_model_is_hybrid(self._model)
        )

    def _free(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        self._free_model()
