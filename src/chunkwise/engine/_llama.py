"""The embedded engine: one GGUF model in one llama.cpp context, driven through the low-level C API.

Design, in the order a request meets it:

* ``prepare_*`` runs on the event loop and is cheap: it renders the chat template, tokenizes and checks
  (:mod:`._requests`). Nothing touches the llama context there.
* The decode runs on a single worker thread (a one-thread executor, so requests also run one at a time).
  ctypes releases the GIL for every C call, so the loop keeps serving while the model computes.
* The prompt reuses whatever prefix of it is still in the KV cache from the previous request, so a repeated
  system prompt or a benchmark's repeated prompt costs one token of decode, not a full prompt pass.
* ``n`` choices are decoded together: the prompt is evaluated once for sequence 0, copied to sequences
  ``1..n-1`` in the (unified) KV cache, and each step decodes one token of every unfinished sequence in a
  single batch. Each sequence samples with its own sampler chain (and its own seed).
* Sampling is llama.cpp's C sampler chain (:mod:`._sampling`); Python touches the logits only when
  log-probabilities are requested.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .._errors import EngineError
from ..types import ChatCompletionChunk, ChatCompletionRequest, Completion, CompletionRequest
from ._bundled import DEFAULT_MODEL_ID, default_model_path
from ._choices import ChoiceWriter, ChunkT, Emitted, SampledLogprobs
from ._generation import Emit, LlamaGeneration, WorkerDone
from ._prompt import CHATML_TEMPLATE, ChatTemplate, TemplateMessage
from ._requests import DecodePlan, plan_chat, plan_completion
from ._sampling import SamplerChain, check_grammar, sequence_seed

__all__ = ["LlamaCppEngine"]

logger = logging.getLogger("chunkwise.engine")

_backend_lock = threading.Lock()
_backend_ready = False


def _init_backend(lib: Any) -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            lib.llama_backend_init()
            _backend_ready = True


class _Sequence:
    """The decode state of one choice."""

    __slots__ = ("chain", "fallback", "generated", "id", "logits_index", "next_token", "writer")

    def __init__(self, seq_id: int, writer: ChoiceWriter[Any], chain: SamplerChain, fallback: SamplerChain | None):
        self.id = seq_id
        self.writer = writer
        #: Samples this sequence's tokens.
        self.chain = chain
        #: ``tool_choice: auto``: the grammar-free chain to switch to once the choice turns out to be text.
        self.fallback = fallback
        self.generated = 0
        self.next_token = 0
        #: Where this sequence's logits are in the last decoded batch (-1: the last output).
        self.logits_index = -1

    def leave_grammar(self) -> None:
        assert self.fallback is not None
        self.chain.close()
        self.chain, self.fallback = self.fallback, None

    def close(self) -> None:
        self.chain.close()
        if self.fallback is not None:
            self.fallback.close()


class LlamaCppEngine:
    """Serves one GGUF model with llama.cpp; implements :class:`~chunkwise.engine.Engine`.

    ``model_path`` defaults to the bundled SmolLM2-135M-Instruct (served as :data:`DEFAULT_MODEL_ID`); any
    other file is served under ``model_id`` or, by default, its file name without ``.gguf``. ``n_ctx``
    defaults to the model's training context, at most 8192 tokens. ``max_sequences`` bounds ``n``.
    ``n_threads`` sets both generation and prompt threads; by default they follow llama-cpp-python
    (half the cores for generation, all of them for prompts).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model_id: str | None = None,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        max_sequences: int = 8,
        n_batch: int = 512,
        n_gpu_layers: int = 0,
        verbose: bool = False,
    ) -> None:
        import llama_cpp

        if max_sequences < 1:
            raise ValueError("max_sequences must be at least 1")
        path = Path(model_path) if model_path is not None else default_model_path()
        if not path.is_file():
            raise EngineError(f"Model file not found: {path}")
        self._model_id = model_id or (DEFAULT_MODEL_ID if model_path is None else path.name.removesuffix(".gguf"))
        self._lib: Any = llama_cpp
        self._lock = threading.Lock()
        self._closed = False
        logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if verbose else logging.ERROR)
        _init_backend(llama_cpp)

        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = n_gpu_layers
        self._model: Any = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
        if not self._model:
            raise EngineError(f"llama.cpp could not load the model file {path}")
        self._ctx: Any = None
        self._batch: Any = None
        try:
            self._vocab: Any = llama_cpp.llama_model_get_vocab(self._model)
            self._n_vocab: int = llama_cpp.llama_vocab_n_tokens(self._vocab)
            train_ctx = llama_cpp.llama_model_n_ctx_train(self._model)
            cpus = os.cpu_count() or 1
            params = llama_cpp.llama_context_default_params()
            params.n_ctx = n_ctx if n_ctx is not None else min(train_ctx, 8192)
            params.n_batch = params.n_ubatch = n_batch
            params.n_seq_max = max_sequences
            params.kv_unified = True  # sequences share the prompt's cells instead of each getting n_ctx / n
            params.n_threads = n_threads or max(cpus // 2, 1)
            params.n_threads_batch = n_threads or cpus
            params.no_perf = True
            # The same kernels as llama-cpp-python's ``Llama`` defaults, so speed comparisons compare overheads.
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
            self._ctx = llama_cpp.llama_init_from_model(self._model, params)
            if not self._ctx:
                raise EngineError("llama.cpp could not create a context for the model")
            self._memory: Any = llama_cpp.llama_get_memory(self._ctx)
            self._n_ctx: int = llama_cpp.llama_n_ctx(self._ctx)
            self._n_batch = n_batch
            self._max_sequences = max_sequences
            self._batch = llama_cpp.llama_batch_init(max(n_batch, max_sequences), 0, 1)
            self._batch_fields = (
                self._batch.token,
                self._batch.pos,
                self._batch.n_seq_id,
                self._batch.seq_id,
                self._batch.logits,
            )
            self._pieces: list[bytes | None] = [None] * self._n_vocab
            self._bos: int = llama_cpp.llama_vocab_bos(self._vocab)
            self._add_bos: bool = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab)) and self._bos >= 0
            self._template = ChatTemplate(
                self._metadata("tokenizer.chat_template") or CHATML_TEMPLATE,
                bos_token=self._token_text(self._bos),
                eos_token=self._token_text(llama_cpp.llama_vocab_eos(self._vocab)),
            )
        except BaseException:
            self._free()
            raise
        #: The tokens whose keys and values sequence 0 holds in the KV cache, for prefix reuse.
        self._cached_tokens: list[int] = []
        #: How much of that prefix was evaluated in the canonical batch grouping (see ``_evaluate_prompt``).
        self._canonical_end = 0
        #: The cancel flag of the generation on the worker, so that ``close`` can stop it.
        self._running: set[threading.Event] = set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunkwise-llama")

    # --- the Engine protocol ------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def context_length(self) -> int:
        return self._n_ctx

    @property
    def busy(self) -> bool:
        """Whether a generation is holding the model right now."""
        return self._lock.locked()

    def prepare_chat(
        self, request: ChatCompletionRequest, *, request_id: str, created: int
    ) -> LlamaGeneration[ChatCompletionChunk]:
        self._check_open()
        return LlamaGeneration(self, plan_chat(self, request, request_id=request_id, created=created))

    def prepare_completion(
        self, request: CompletionRequest, *, request_id: str, created: int
    ) -> LlamaGeneration[Completion]:
        self._check_open()
        return LlamaGeneration(self, plan_completion(self, request, request_id=request_id, created=created))

    def close(self) -> None:
        """Stop the running generation (within a token), fail the queued ones, free the model. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for cancel in list(self._running):
            cancel.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._free()

    def __enter__(self) -> LlamaCppEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- what request planning needs (PromptModel) --------------------------------------------------

    @property
    def n_vocab(self) -> int:
        return self._n_vocab

    @property
    def max_sequences(self) -> int:
        return self._max_sequences

    @property
    def document_start_token(self) -> int:
        """What an empty legacy prompt starts from (OpenAI: "as if from the beginning of a new document")."""
        return self._bos if self._bos >= 0 else int(self._lib.llama_vocab_eos(self._vocab))

    @property
    def chat_template(self) -> str:
        return self._template.source

    def render_chat(self, messages: list[TemplateMessage]) -> str:
        return self._template.render(messages)

    def tokenize(self, text: str, *, parse_special: bool = True) -> list[int]:
        self._check_open()
        data = text.encode()
        capacity = len(data) + 1
        tokens = (self._lib.llama_token * capacity)()
        count = self._lib.llama_tokenize(self._vocab, data, len(data), tokens, capacity, False, parse_special)
        if count < 0:  # cannot happen (a token covers at least one byte), but llama.cpp reports it this way
            raise EngineError(f"Tokenization needs {-count} tokens, more than the {capacity} allowed")
        result: list[int] = tokens[:count]
        return result

    def tokenize_prompt(self, text: str) -> list[int]:
        """Tokens for a prompt: special tokens parsed, BOS added if the model wants one and it is missing."""
        tokens = self.tokenize(text)
        if self._add_bos and (not tokens or tokens[0] != self._bos):
            tokens.insert(0, self._bos)
        return tokens

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (empty for control tokens); cached, so O(1) after the first time."""
        cached = self._pieces[token]
        if cached is None:
            # A fresh buffer per miss: the worker and the event loop may both be looking up pieces.
            buffer = ctypes.create_string_buffer(64)
            size = self._lib.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
            if size < 0:  # the buffer was too small; -size is what the piece needs
                buffer = ctypes.create_string_buffer(-size)
                size = self._lib.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
            cached = buffer.raw[: max(size, 0)]
            self._pieces[token] = cached
        return cached

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.piece(token) for token in tokens).decode("utf-8", errors="replace")

    def check_grammar(self, grammar: str, *, param: str) -> None:
        check_grammar(self._vocab, grammar, param=param)

    # --- the worker ---------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError("The engine is closed")

    def submit(self, plan: DecodePlan[ChunkT], emit: Emit[ChunkT], cancel: threading.Event) -> asyncio.Future[None]:
        """Queue ``plan`` on the worker thread; the future resolves once the worker has let go of the model."""
        self._check_open()
        return asyncio.get_running_loop().run_in_executor(self._executor, self._generate, plan, emit, cancel)

    def _generate(self, plan: DecodePlan[ChunkT], emit: Emit[ChunkT], cancel: threading.Event) -> None:
        with self._lock:
            sequences: list[_Sequence] = []
            self._running.add(cancel)
            try:
                if self._closed:
                    raise EngineError("The engine is closed")
                sequences = self._start_sequences(plan)
                finished = False
                if self._evaluate_prompt(plan.prompt, cancel):
                    for sequence in sequences[1:]:
                        self._lib.llama_memory_seq_cp(self._memory, 0, sequence.id, -1, -1)
                    started: list[Emitted[ChunkT]] = [
                        item for sequence in sequences if (item := sequence.writer.start()) is not None
                    ]
                    if started:
                        emit(started)
                    finished = self._decode(plan, sequences, emit, cancel)
                if not finished and self._closed:  # stopped by close(), not by the consumer: say why
                    emit(WorkerDone(EngineError("The engine was closed during generation")))
                else:
                    emit(WorkerDone())
            except BaseException as exc:
                self._forget_cache()
                emit(WorkerDone(exc))
            finally:
                self._running.discard(cancel)
                for sequence in sequences:
                    sequence.close()
                for seq_id in range(1, plan.n):
                    self._lib.llama_memory_seq_rm(self._memory, seq_id, -1, -1)

    def _start_sequences(self, plan: DecodePlan[ChunkT]) -> list[_Sequence]:
        sequences: list[_Sequence] = []
        try:
            for seq_id, writer in enumerate(plan.make_writers()):
                seed = sequence_seed(plan.sampling.seed, seq_id)
                chain = SamplerChain(self._vocab, self._n_vocab, plan.sampling, seed=seed, grammar=plan.grammar)
                fallback = None
                if plan.grammar_until_decided:
                    fallback = SamplerChain(self._vocab, self._n_vocab, plan.sampling, seed=seed, grammar=None)
                sequences.append(_Sequence(seq_id, writer, chain, fallback))
        except BaseException:
            for sequence in sequences:
                sequence.close()
            raise
        return sequences

    def _evaluate_prompt(self, prompt: Sequence[int], cancel: threading.Event) -> bool:
        """Bring sequence 0 to the end of ``prompt``, reusing the cached prefix; False if cancelled.

        llama.cpp's results depend on how tokens are grouped into batches (a batch of one takes another
        kernel than a batch of 40), and greedy decoding of a small model flips on such last-bit
        differences. So every prompt is evaluated with one canonical grouping, whatever the cache holds:
        batches that start at multiples of ``n_batch``, then the last prompt token alone. A cached prefix is
        reused only up to a point where the grouping that produced it agrees with the canonical one, so a
        request gives the same text whether it arrives first or repeats an earlier prompt.
        """
        cached = self._cached_tokens
        last = len(prompt) - 1  # the last prompt token is always decoded alone, for its logits
        common = 0
        limit = min(len(cached), last)
        while common < limit and cached[common] == prompt[common]:
            common += 1
        if common == last and self._canonical_end == last:
            reuse = last
        else:
            reuse = min(common, self._canonical_end) // self._n_batch * self._n_batch
        if reuse < len(cached):
            if not self._lib.llama_memory_seq_rm(self._memory, 0, reuse, -1):
                self._lib.llama_memory_clear(self._memory, True)
                reuse = 0
            del cached[reuse:]
        starts = [*range(reuse, last, self._n_batch), last]
        for start, end in zip(starts, [*starts[1:], len(prompt)], strict=True):
            if cancel.is_set():
                self._canonical_end = min(self._canonical_end, len(cached))
                return False
            self._decode_prompt_part(prompt[start:end], start)
            cached.extend(prompt[start:end])
        self._canonical_end = last
        return True

    def _decode_prompt_part(self, part: Sequence[int], start: int) -> None:
        tokens, positions, n_seq_ids, seq_ids, logits = self._batch_fields
        for index, token in enumerate(part):
            tokens[index] = token
            positions[index] = start + index
            n_seq_ids[index] = 1
            seq_ids[index][0] = 0
            logits[index] = 0
        logits[len(part) - 1] = 1
        self._batch.n_tokens = len(part)
        self._decode_batch()

    def _decode(
        self, plan: DecodePlan[ChunkT], sequences: list[_Sequence], emit: Emit[ChunkT], cancel: threading.Event
    ) -> bool:
        """Generate until every sequence has finished (True) or ``cancel`` is set (False)."""
        lib, ctx, vocab = self._lib, self._ctx, self._vocab
        sample, is_end = lib.llama_sampler_sample, lib.llama_vocab_is_eog
        tokens, positions, n_seq_ids, seq_ids, logits = self._batch_fields
        max_new_tokens, top_logprobs = plan.max_new_tokens, plan.top_logprobs
        cached = self._cached_tokens
        position = len(plan.prompt)
        active = sequences
        while True:
            emitted: list[Emitted[ChunkT]] = []
            running: list[_Sequence] = []
            for sequence in active:
                token = sample(sequence.chain.pointer, ctx, sequence.logits_index)
                writer = sequence.writer
                if is_end(vocab, token):
                    emitted += writer.end_of_generation()
                    continue
                logprobs = None if top_logprobs is None else self._logprobs(sequence.logits_index, token, top_logprobs)
                item = writer.token(token, logprobs)
                if item is not None:
                    emitted.append(item)
                sequence.generated += 1
                if writer.stopped:
                    emitted += writer.finish("stop")
                elif sequence.generated >= max_new_tokens:
                    emitted += writer.finish("length")
                else:
                    if sequence.fallback is not None:
                        self._settle_grammar(sequence, token)
                    sequence.next_token = token
                    running.append(sequence)
            if emitted:
                emit(emitted)
            if not running:
                return True
            if cancel.is_set():
                return False
            for index, sequence in enumerate(running):
                tokens[index] = sequence.next_token
                positions[index] = position
                n_seq_ids[index] = 1
                seq_ids[index][0] = sequence.id
                logits[index] = 1
                sequence.logits_index = index
            self._batch.n_tokens = len(running)
            self._decode_batch()
            if running[0].id == 0:
                cached.append(running[0].next_token)
            position += 1
            active = running

    @staticmethod
    def _settle_grammar(sequence: _Sequence, token: int) -> None:
        """``tool_choice: auto``: once the output is known to be text or a call, keep only the chain it needs."""
        assert sequence.fallback is not None
        needed = sequence.writer.grammar_needed
        if needed is None:
            sequence.fallback.accept(token)  # keep its penalties in step until the choice is made
        elif needed:
            sequence.fallback.close()
            sequence.fallback = None
        else:
            sequence.leave_grammar()

    def _decode_batch(self) -> None:
        status = self._lib.llama_decode(self._ctx, self._batch)
        if status != 0:
            raise EngineError(f"llama_decode failed with status {status}")

    def _logprobs(self, logits_index: int, token: int, top: int) -> SampledLogprobs:
        """Log-softmax of the raw logits (before penalties, bias or temperature), as OpenAI reports them."""
        import numpy as np

        logits = np.ctypeslib.as_array(self._lib.llama_get_logits_ith(self._ctx, logits_index), shape=(self._n_vocab,))
        peak = float(logits.max())
        log_total = peak + float(np.log(np.exp(logits - peak).sum()))
        alternatives: list[tuple[int, float]] = []
        if top:
            best = np.argpartition(logits, -top)[-top:]
            best = best[np.argsort(-logits[best], kind="stable")]
            alternatives = [(int(candidate), float(logits[candidate]) - log_total) for candidate in best]
        return SampledLogprobs(float(logits[token]) - log_total, alternatives)

    def _forget_cache(self) -> None:
        """After a failure the KV cache's contents are unknown: start the next request from nothing."""
        self._cached_tokens.clear()
        self._canonical_end = 0
        if self._memory:
            self._lib.llama_memory_clear(self._memory, True)

    # --- loading ------------------------------------------------------------------------------------

    def _metadata(self, key: str) -> str | None:
        buffer = ctypes.create_string_buffer(4096)
        size = self._lib.llama_model_meta_val_str(self._model, key.encode(), buffer, len(buffer))
        if size < 0:
            return None
        if size >= len(buffer):
            buffer = ctypes.create_string_buffer(size + 1)
            self._lib.llama_model_meta_val_str(self._model, key.encode(), buffer, len(buffer))
        return buffer.value.decode("utf-8", errors="replace")

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        text: bytes = self._lib.llama_vocab_get_text(self._vocab, token)
        return text.decode("utf-8", errors="replace")

    def _free(self) -> None:
        lib = self._lib
        if self._batch is not None:
            lib.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            lib.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            lib.llama_model_free(self._model)
            self._model = None
