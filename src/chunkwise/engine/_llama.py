"""The embedded engine: one GGUF model in one llama.cpp context, driven through the low-level C API.

Design, in the order a request meets it:

* ``prepare_*`` runs on the event loop and is cheap: it renders the chat template, tokenizes and checks
  (:mod:`._requests`). Nothing touches the llama context there.
* :meth:`LlamaCppEngine.submit` hands the plan to the engine's worker thread, which runs one persistent step
  loop (:mod:`._batching`): every running sequence of every request shares each ``llama_decode``, new
  prompts are evaluated in bounded pieces between decode steps, and a shared prefix is copied from the
  sequence that holds it. ctypes releases the GIL for every C call, so the event loop keeps serving while
  the model computes, and the worker never waits for the loop.
* Each sequence has its own KV stream (``kv_unified = False``) of :attr:`context_length` cells. That is what
  makes greedy output batch-invariant: measured on this build, a sequence's logits are bitwise the same
  whether its decode step carries 0 or 7 other sequences, and after a prefix copy; with one unified cache
  they are not, because the cells' placement changes the attention sums. With f16 keys, prompts are
  evaluated in one canonical grouping (see :func:`._batching.canonical_cuts`), since the grouping of a
  prompt's own tokens changes the result there; with q8_0 keys (the default) it does not (see ``_splits``).
* Sampling is llama.cpp's C sampler chain (:mod:`._sampling`), one per sequence; Python touches the logits
  only when log-probabilities are requested.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._closing import Closing
from .._errors import EngineError
from ..types import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)
from ._batching import BatchingStats, StepLoop
from ._bundled import DEFAULT_MODEL_ID, default_model_path
from ._choices import ChunkT
from ._generation import Emit, LlamaGeneration
from ._jump import JumpForward
from ._prompt import CHATML_TEMPLATE, ChatTemplate, TemplateMessage
from ._requests import DecodePlan, plan_chat, plan_completion
from ._sampling import check_grammar
from ._tokens import detokenize_request, tokenize_request

__all__ = ["LlamaCppEngine", "load_model", "model_metadata", "prefer_spinning_openmp", "tokenize_text"]

logger = logging.getLogger("chunkwise.engine")

_backend_lock = threading.Lock()
_backend_ready = False

#: The default context per sequence when the model's training context is longer: every running sequence
#: gets its own cells, so the KV cache holds ``max_sequences`` times this (about 23 KiB a cell here).
DEFAULT_SEQUENCE_CONTEXT = 2048


def prefer_spinning_openmp() -> None:
    """Ask libgomp to spin at its barriers, unless the user chose otherwise; call before llama.cpp loads.

    llama.cpp's CPU backend is built with OpenMP and meets its threads at an OpenMP barrier after every op
    of the graph, a few hundred per decode. With ``GOMP_SPINCOUNT`` unset, libgomp here waits there far less
    actively than its documented default, and decode steps were measurably slower (see git history for the
    measurement). libgomp reads the variable once, in its constructor, when ``import llama_cpp`` loads
    llama.cpp's shared libraries: so it is set here, just before the engine's first import of llama_cpp,
    and not when this module is imported, which must leave the process environment alone. If llama_cpp was
    already imported, the setting comes too late to matter but does no harm. After the last decode a thread
    spins this long (a few milliseconds) before it sleeps.
    """
    os.environ.setdefault("GOMP_SPINCOUNT", "300000")


#: ggml's numbers for the key cache's types (``enum ggml_type``), by the names llama.cpp's ``--cache-type-k`` takes.
KEY_CACHE_TYPES = {"q8_0": 8, "f16": 1}
_GGML_TYPE_F16 = 1

#: Guessed tokens per sequence and step at most, by default. Chosen under the former doubling rule, where 8
#: wrote copy and JSON faster than 16 in replays over real outputs (bench/simulate_drafts.py); with guesses
#: priced by measured step costs the two replay within a few percent of each other.
DEFAULT_DRAFT_MAX = 8
#: The limit: with f16 keys, a sequence's tokens in one micro-batch must stay under flash attention's 64-row
#: tile, past which its tiled path gives other last bits than one token at a time.
MAX_DRAFT = 48


def _init_backend(lib: Any) -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            lib.llama_backend_init()
            _backend_ready = True


def load_model(lib: Any, path: Path, *, n_gpu_layers: int, verbose: bool) -> Any:
    """A llama.cpp model loaded from ``path`` (the backend set up first); the caller frees it."""
    logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if verbose else logging.ERROR)
    _init_backend(lib)
    model_params = lib.llama_model_default_params()
    model_params.n_gpu_layers = n_gpu_layers
    model = lib.llama_model_load_from_file(str(path).encode(), model_params)
    if not model:
        raise EngineError(f"llama.cpp could not load the model file {path}")
    return model


def tokenize_text(lib: Any, vocab: Any, text: str, *, parse_special: bool) -> list[int]:
    """``text``'s tokens in ``vocab``, with no BOS/EOS added; control-token text is parsed only if asked."""
    data = text.encode()
    capacity = len(data) + 1
    tokens = (lib.llama_token * capacity)()
    count = lib.llama_tokenize(vocab, data, len(data), tokens, capacity, False, parse_special)
    if count < 0:  # cannot happen (a token covers at least one byte), but llama.cpp reports it this way
        raise EngineError(f"Tokenization needs {-count} tokens, more than the {capacity} allowed")
    result: list[int] = tokens[:count]
    return result


def model_metadata(lib: Any, model: Any, key: str) -> str | None:
    """A GGUF metadata value as text, or None when the file has no such key."""
    buffer = ctypes.create_string_buffer(4096)
    size = lib.llama_model_meta_val_str(model, key.encode(), buffer, len(buffer))
    if size < 0:
        return None
    if size >= len(buffer):
        buffer = ctypes.create_string_buffer(size + 1)
        lib.llama_model_meta_val_str(model, key.encode(), buffer, len(buffer))
    return buffer.value.decode("utf-8", errors="replace")


class LlamaModelHolder(Closing):
    """What the chat engine and the embedder share: a llama.cpp model and context, which they free alike, the
    model's id and one sequence's context length, and closing as a context manager."""

    _lib: Any
    _model: Any
    _ctx: Any
    _model_id: str
    _n_ctx: int

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def context_length(self) -> int:
        """The longest sequence in tokens: a prompt with its output, or an input to embed."""
        return self._n_ctx

    def _free_model(self) -> None:
        """Free the context and the model, once; what uses them is freed first."""
        if self._ctx:
            self._lib.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            self._lib.llama_model_free(self._model)
            self._model = None


class LlamaCppEngine(LlamaModelHolder):
    """Serves one GGUF model with llama.cpp; implements :class:`~chunkwise.engine.Engine`.

    ``model_path`` defaults to the bundled SmolLM2-135M-Instruct (served as :data:`DEFAULT_MODEL_ID`); any
    other file is served under ``model_id`` or, by default, its file name without ``.gguf``. ``n_ctx`` is
    the context of one sequence (prompt plus output), by default the model's training context, at most
    2048 tokens. ``max_sequences`` sequences run at once (a request with ``n=4`` takes 4); more requests
    wait inside the engine. ``prefill_chunk`` is the largest piece prompts are evaluated in between
    decode steps (pieces also start at each message boundary, where cached prefixes can be reused).
    ``n_threads`` sets both generation and prompt threads, by default one per core.

    ``speculation`` lets each running sequence guess up to ``draft_max`` tokens per step from its own prompt
    and output (prompt lookup), verified in the same decode as everyone's next token; it changes no output
    (see :mod:`._splits`); it decodes as many of its guesses as pay, from how often its guesses have been kept
    and what this machine's steps of each size cost (see :mod:`._drafts`). ``jump_forward`` guesses
    the text a request's grammar forces (the keys and punctuation of a ``json_schema``), with or without
    ``speculation``, verified the same way (see :mod:`._jump`); off by default, since the model often writes
    forced text in other tokens than guessed and it measured no faster. ``cache_type_k`` is the type of the
    cached keys, ``"q8_0"`` (the default, which keeps every batch shape on one attention path) or ``"f16"``
    (llama.cpp's default, for which the step loop guards one shape at the cost of a token; see :mod:`._splits`).
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
        prefill_chunk: int = 64,
        speculation: bool = True,
        draft_max: int = DEFAULT_DRAFT_MAX,
        jump_forward: bool = False,
        cache_type_k: str = "q8_0",
        n_gpu_layers: int = 0,
        verbose: bool = False,
    ) -> None:
        if max_sequences < 1:
            raise ValueError("max_sequences must be at least 1")
        if not 1 <= prefill_chunk <= n_batch:
            raise ValueError(f"prefill_chunk must be between 1 and n_batch ({n_batch})")
        if cache_type_k not in KEY_CACHE_TYPES:
            raise ValueError(f"cache_type_k must be one of {', '.join(KEY_CACHE_TYPES)}")
        if not 1 <= draft_max <= MAX_DRAFT:
            raise ValueError(f"draft_max must be between 1 and {MAX_DRAFT}")
        prefer_spinning_openmp()
        import llama_cpp

        path = Path(model_path) if model_path is not None else default_model_path()
        if not path.is_file():
            raise EngineError(f"Model file not found: {path}")
        self._model_id = model_id or (DEFAULT_MODEL_ID if model_path is None else path.name.removesuffix(".gguf"))
        self._model_path = path
        self._lib: Any = llama_cpp
        self._closed = False
        self._model: Any = load_model(llama_cpp, path, n_gpu_layers=n_gpu_layers, verbose=verbose)
        self._ctx: Any = None
        self._loop: StepLoop | None = None
        try:
            self._vocab: Any = llama_cpp.llama_model_get_vocab(self._model)
            self._n_vocab: int = llama_cpp.llama_vocab_n_tokens(self._vocab)
            train_ctx = llama_cpp.llama_model_n_ctx_train(self._model)
            sequence_ctx = n_ctx if n_ctx is not None else min(train_ctx, DEFAULT_SEQUENCE_CONTEXT)
            params = llama_cpp.llama_context_default_params()
            params.n_ctx = sequence_ctx * max_sequences
            params.n_batch = params.n_ubatch = n_batch
            params.n_seq_max = max_sequences
            # One KV stream per sequence: batch-invariant attention (see the module docstring).
            params.kv_unified = False
            threads = n_threads or os.cpu_count() or 1
            params.n_threads = params.n_threads_batch = threads
            params.no_perf = True
            # Flash attention, as llama-server's default picks on CPU: with 8 sequences per decode step it
            # is ~12% faster than the plain KQ/softmax/V path (masked cells are skipped instead of
            # multiplied), and it keeps the logits batch-invariant (tests/engine/test_determinism.py).
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            # Keys in q8_0 beside f16 values keep flash attention on the one path that computes each query row
            # alone, in order, whatever the batch shape (see ``_splits``); f16 keys are llama.cpp's default.
            params.type_k = KEY_CACHE_TYPES[cache_type_k]
            params.type_v = _GGML_TYPE_F16
            self._ctx = llama_cpp.llama_init_from_model(self._model, params)
            if not self._ctx:
                raise EngineError("llama.cpp could not create a context for the model")
            self._n_ctx: int = llama_cpp.llama_n_ctx_seq(self._ctx)
            self._max_sequences = max_sequences
            self._pieces: list[bytes | None] = [None] * self._n_vocab
            self._bos: int = llama_cpp.llama_vocab_bos(self._vocab)
            self._add_bos: bool = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab)) and self._bos >= 0
            self._template = ChatTemplate(
                model_metadata(llama_cpp, self._model, "tokenizer.chat_template") or CHATML_TEMPLATE,
                bos_token=self._token_text(self._bos),
                eos_token=self._token_text(llama_cpp.llama_vocab_eos(self._vocab)),
            )
            self._loop = StepLoop(
                llama_cpp,
                self._ctx,
                self._vocab,
                n_vocab=self._n_vocab,
                sequences=max_sequences,
                n_batch=n_batch,
                prefill_chunk=prefill_chunk,
                draft_max=draft_max if speculation else 0,
                jump_forward=self._jump_forward() if jump_forward else None,
                guard_lone_tokens=threads > 1 and cache_type_k == "f16",
                any_grouping=cache_type_k == "q8_0",
            )
        except BaseException:
            self._free()
            raise

    def _jump_forward(self) -> JumpForward:
        lib, vocab = self._lib, self._vocab
        return JumpForward(
            lib,
            n_vocab=self._n_vocab,
            end=lib.llama_vocab_eos(vocab),
            piece=self.piece,
            tokenize=lambda text: tokenize_text(lib, vocab, text, parse_special=False),
        )

    # --- the Engine protocol (and model_id, context_length of LlamaModelHolder) ----------------------

    @property
    def model_path(self) -> Path:
        """The GGUF file served (what :class:`LlamaEmbedder` loads by default)."""
        return self._model_path

    @property
    def max_running(self) -> int:
        """How many sequences decode together; the server admits requests up to this many."""
        return self._max_sequences

    @property
    def busy(self) -> bool:
        """Whether any request is running or waiting in the engine."""
        return self._loop is not None and self._loop.busy

    def batching_stats(self) -> BatchingStats:
        """The step loop's counters, for the server's metrics."""
        assert self._loop is not None
        return self._loop.stats

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
        """Stop the running generations (within a step), fail the waiting ones, free the model. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            self._loop.close()
        self._free()

    # --- what request planning needs (PromptModel) --------------------------------------------------

    @property
    def n_vocab(self) -> int:
        return self._n_vocab

    @property
    def document_start_token(self) -> int:
        """What an empty legacy prompt starts from (OpenAI: "as if from the beginning of a new document")."""
        return self._bos if self._bos >= 0 else int(self._lib.llama_vocab_eos(self._vocab))

    @property
    def chat_template(self) -> str:
        return self._template.source

    def render_chat(self, messages: list[TemplateMessage], *, add_generation_prompt: bool = True) -> str:
        return self._template.render(messages, add_generation_prompt=add_generation_prompt)

    def tokenize(self, text: str, *, parse_special: bool = True) -> list[int]:
        self._check_open()
        return tokenize_text(self._lib, self._vocab, text, parse_special=parse_special)

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

    # --- /tokenize and /detokenize (TokenizingEngine) -----------------------------------------------

    def tokenize_request(self, request: TokenizeRequest) -> TokenizeResponse:
        self._check_open()
        return tokenize_request(self, request)

    def detokenize_request(self, request: DetokenizeRequest) -> DetokenizeResponse:
        self._check_open()
        return detokenize_request(self, request)

    # --- the worker ---------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError("The engine is closed")

    def submit(self, plan: DecodePlan[ChunkT], emit: Emit[ChunkT], cancel: threading.Event) -> asyncio.Future[None]:
        """Queue ``plan`` on the step loop; the future resolves once the loop has let go of its sequences."""
        self._check_open()
        assert self._loop is not None
        return self._loop.submit(plan, emit, cancel)

    # --- loading ------------------------------------------------------------------------------------

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        text: bytes = self._lib.llama_vocab_get_text(self._vocab, token)
        return text.decode("utf-8", errors="replace")

    def _free(self) -> None:
        if self._loop is not None:
            self._loop.free()
        self._free_model()
