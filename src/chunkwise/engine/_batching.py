"""Continuous batching: one persistent step loop on the engine's worker thread.

Each step of :class:`StepLoop`:

1. drops the requests whose consumer went away (their sequences are free for the next request at once);
2. admits waiting requests, first come first served, while enough sequences are free (a request with
   ``n=4`` needs 4), and gives each free sequences that keep the running ids consecutive (llama.cpp makes
   one pass over the weights per run of consecutive ids), among them the one whose KV stream shares the
   longest prefix with its prompt (a sequence that nobody uses keeps its tokens as a prefix cache until it
   is the least recently used one); a longer prefix held elsewhere is copied in;
3. decodes one token of every running sequence of every request in a single ``llama_decode``, each followed
   by the tokens it guesses (speculative decoding, :mod:`._drafts`), and samples each position with the
   sequence's own sampler chain, keeping guesses while the samples equal them;
4. evaluates a few pieces of at most ``prefill_chunk`` prompt tokens of the requests still reading their
   prompt, in separate decodes (never mixed into the step's batch), so a long prompt delays the running
   streams by a bounded amount per step; a prompt's last token yields its first output token at once.
   Pieces also start at every message boundary (:func:`canonical_cuts`), so a shared system prompt or a
   conversation's earlier turns are a reusable prefix whatever their length. Where the key cache makes
   every grouping give the same result (q8_0 keys, see :mod:`._splits`), pieces have no fixed places:
   any cached prefix is reused, and with nobody decoding a piece is as long as one decode holds.
   Before each piece, a longer prefix of the prompt held by any other sequence is copied in
   (``llama_memory_seq_cp``), so requests arriving together with one system prompt evaluate it once.

Every sequence owns one KV stream (the context is not unified), which keeps each sequence's arithmetic
independent of its company: greedy output is the same alone, among others, and after a prefix copy. A
stream has room for the whole request (planning clamps ``max_tokens``), so the cache never fills up mid
generation and nobody's state is ever wiped. A failure is confined to the request it belongs to: its
sequences are cleared and it alone ends with the error.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic

from .._errors import EngineError
from ._choices import ChoiceWriter, ChunkT, Emitted, SampledLogprobs
from ._drafts import DraftBudget, OutputCache, PromptLookup, StepCosts
from ._generation import Emit, WorkerDone
from ._jump import JumpForward
from ._requests import DecodePlan
from ._sampling import Candidates, SamplerChain, sequence_seed
from ._splits import lone_single_tokens

__all__ = ["BatchingHistogram", "BatchingStats", "StepLoop"]


class BatchingHistogram:
    """Cumulative bucket counts, the shape Prometheus exports; written by the worker, read by the server."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value


class BatchingStats:
    """What the step loop is doing, for metrics. Plain attributes: reading them never blocks the worker."""

    def __init__(self, *, sequences: int, cells: int) -> None:
        #: Sequences decoding or reading their prompt.
        self.running_sequences = 0
        #: Requests submitted to the engine and not yet admitted.
        self.waiting_requests = 0
        #: KV cells holding tokens: running sequences plus the prefix cache.
        self.kv_cells_used = 0
        self.kv_cells_total = cells
        self.max_sequences = sequences
        #: Requests whose prompt started from cached tokens, and how many prompt tokens that saved.
        self.prefix_cache_hits = 0
        self.prefix_cache_tokens = 0
        #: Tokens per shared decode step (one per running sequence).
        self.batch_size = BatchingHistogram((1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64))
        #: Wall time of each step: the shared decode, the sampling and any prompt pieces.
        self.step_seconds = BatchingHistogram((0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56))
        #: Guessed tokens verified in decode steps, and how many of them the sampled output kept.
        self.drafted_tokens = 0
        self.accepted_tokens = 0
        #: Tokens guessed from the text a grammar forces (jump-forward), and how many of them the output kept.
        self.forced_tokens = 0
        self.forced_accepted_tokens = 0
        #: Wall time inside ``llama_decode`` and the number of calls, for the shared decode steps and for
        #: prompt pieces apart: what ``step_seconds`` spends outside them is the loop's own (Python) work.
        self.step_decode_seconds = 0.0
        self.step_decodes = 0
        self.prompt_decode_seconds = 0.0
        self.prompt_decodes = 0


class _Slot:
    """One llama.cpp sequence id with its own KV stream; ``tokens`` is exactly what that stream holds."""

    __slots__ = ("cuts", "id", "last_used", "owner", "tokens")

    def __init__(self, seq_id: int) -> None:
        self.id = seq_id
        self.tokens: list[int] = []
        #: Where the prompt pieces evaluated into ``tokens`` began and where the last one ended: the leading
        #: tokens up to ``cuts[-1]`` were evaluated in their prompt's canonical grouping (see ``canonical_cuts``).
        self.cuts = [0]
        self.owner: _Job[Any] | None = None
        self.last_used = 0

    def keep(self, count: int) -> None:
        """Hold only the first ``count`` tokens (0 or one of ``cuts``, unless any grouping will do)."""
        del self.tokens[count:]
        self.cuts = [cut for cut in self.cuts if cut <= count]


class _Sequence:
    """The decode state of one choice."""

    __slots__ = (
        "budget",
        "chain",
        "draft",
        "fallback",
        "forced",
        "forced_budget",
        "generated",
        "logits_index",
        "lookup",
        "next_token",
        "slot",
        "writer",
    )

    def __init__(self, writer: ChoiceWriter[Any], chain: SamplerChain, fallback: SamplerChain | None):
        self.writer = writer
        #: Samples this sequence's tokens.
        self.chain = chain
        #: ``tool_choice: auto``: the grammar-free chain to switch to once the choice turns out to be text.
        self.fallback = fallback
        self.generated = 0
        self.next_token = 0
        #: Where this sequence's logits are in the last decoded batch (-1: the last output); the rows of
        #: its guessed tokens follow.
        self.logits_index = -1
        self.slot: _Slot | None = None
        #: Guessed tokens decoded after ``next_token`` in the current step, verified when sampling.
        self.draft: list[int] = []
        #: How many of ``draft`` are the tokens of text its grammar forces (jump-forward), and how many such
        #: tokens it guesses, from how its earlier ones fared (the model may write forced text in other pieces).
        self.forced = 0
        self.forced_budget: DraftBudget | None = None
        #: The prompt and output so far, for guessing (``None``: speculation is off).
        self.lookup: PromptLookup | None = None
        self.budget: DraftBudget | None = None

    def leave_grammar(self) -> None:
        assert self.fallback is not None
        self.chain.close()
        self.chain, self.fallback = self.fallback, None

    def close(self) -> None:
        self.chain.close()
        if self.fallback is not None:
            self.fallback.close()


class _Job(Generic[ChunkT]):
    """One submitted request on its way through the loop."""

    __slots__ = ("cancel", "cuts", "emit", "plan", "release", "running", "sequences")

    def __init__(
        self, plan: DecodePlan[ChunkT], emit: Emit[ChunkT], cancel: threading.Event, release: Callable[[], None]
    ) -> None:
        self.plan: DecodePlan[ChunkT] = plan
        self.emit: Emit[ChunkT] = emit
        self.cancel = cancel
        #: Resolves the submitter's future: called once, after the job has let go of its sequences.
        self.release = release
        self.sequences: list[_Sequence] = []
        #: The sequences still generating; empty while the prompt is being read.
        self.running: list[_Sequence] = []
        #: The prompt's canonical pieces (see :func:`canonical_cuts`), set at admission.
        self.cuts: list[int] = []

    @property
    def prompt_done(self) -> bool:
        slot = self.sequences[0].slot
        return slot is not None and len(slot.tokens) >= len(self.plan.prompt)


def _resolver(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> Callable[[], None]:
    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    def release() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for this any more
            loop.call_soon_threadsafe(resolve)

    return release


def canonical_cuts(length: int, boundaries: Sequence[int], chunk: int) -> list[int]:
    """Where the pieces of a ``length``-token prompt start, then ``length``: its one canonical grouping.

    llama.cpp's results depend on how prompt tokens are grouped into decodes, and greedy decoding of a
    small model flips on such last-bit differences. So every prompt is evaluated in pieces that depend only
    on the prompt itself: a new piece at each message boundary (where a message's content starts), pieces
    of at most ``chunk`` tokens between boundaries, and the last token alone (for its logits). A cached
    prefix is reused only up to a cut where the grouping that produced it agrees with this one.
    """
    last = length - 1
    starts = [0, *sorted({boundary for boundary in boundaries if 0 < boundary < last})]
    cuts: list[int] = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else last
        cuts.extend(range(start, end, chunk))
    cuts.append(last)
    cuts.append(length)
    return cuts


#: The most tokens of forced text a sequence guesses per step.
_MAX_FORCED_TOKENS = 16
#: Guesses (speculation's and jump-forward's) are made only in steps that decode at most this many sequences.
_GUESSING_COMPANY = 1
#: Streams longer than this may have a KV view of 512 cells (see ``StepLoop._long_stream``).
_LONG_STREAM = 192


def _runs(ids: set[int]) -> int:
    """How many runs of consecutive numbers ``ids`` makes."""
    return sum(1 for id_ in ids if id_ - 1 not in ids)


def _slot_id(sequence: _Sequence) -> int:
    assert sequence.slot is not None
    return sequence.slot.id


def _common_prefix(cached: list[int], prompt: Sequence[int], limit: int) -> int:
    count = 0
    limit = min(limit, len(cached))
    while count < limit and cached[count] == prompt[count]:
        count += 1
    return count


class StepLoop:
    """The worker thread and everything it owns: the sequences, the batch and the waiting requests."""

    def __init__(
        self,
        lib: Any,
        ctx: Any,
        vocab: Any,
        *,
        n_vocab: int,
        sequences: int,
        n_batch: int,
        prefill_chunk: int,
        draft_max: int = 0,
        jump_forward: JumpForward | None = None,
        guard_lone_tokens: bool = False,
        any_grouping: bool = False,
    ) -> None:
        self._lib = lib
        self._ctx = ctx
        self._vocab = vocab
        self._memory: Any = lib.llama_get_memory(ctx)
        self._n_vocab = n_vocab
        self._prefill_chunk = prefill_chunk
        #: Prompt tokens evaluated per step at most (give or take one piece): a few pieces, so that short
        #: prompts arriving together all start within a step or two.
        self._prefill_budget = 4 * prefill_chunk
        #: The most tokens a sequence guesses per step (0: speculation is off).
        self._draft_max = draft_max
        #: Finished outputs, guessed from where a sequence's own tokens give no guess.
        self._outputs = OutputCache()
        #: What steps of one sequence alone cost by size: the price of its guesses.
        self._step_costs = StepCosts()
        #: Guesses the text grammars force (None: jump-forward is off).
        self._jump_forward = jump_forward
        self._candidates = Candidates(n_vocab)
        #: One shape of micro-batch takes another attention path and must be avoided (see ``_splits``).
        self._guard_lone_tokens = guard_lone_tokens
        #: Any grouping of a prompt's tokens into decodes gives bitwise the same cache and logits (see
        #: ``_splits``): prompts are then read in pieces of any size, and a cached stream's whole common
        #: prefix with a prompt is reused, an earlier answer's tokens included. Otherwise the canonical
        #: grouping holds (see :func:`canonical_cuts`).
        self._any_grouping = any_grouping
        self._batch_capacity = max(n_batch, sequences)
        self._batch: Any = lib.llama_batch_init(self._batch_capacity, 0, 1)
        self._batch_fields = (
            self._batch.token,
            self._batch.pos,
            self._batch.n_seq_id,
            self._batch.seq_id,
            self._batch.logits,
        )
        self._slots = [_Slot(seq_id) for seq_id in range(sequences)]
        self._clock = 0
        self.stats = BatchingStats(sequences=sequences, cells=lib.llama_n_ctx(ctx))
        # Shared with submitters on the event loop; everything else belongs to the worker thread.
        self._wakeup = threading.Condition()
        self._inbox: list[_Job[Any]] = []
        self._closing = False
        self._waiting: deque[_Job[Any]] = deque()
        self._active: list[_Job[Any]] = []
        self._thread = threading.Thread(target=self._run, name="chunkwise-llama", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return bool(self._inbox or self._waiting or self._active)

    def submit(self, plan: DecodePlan[ChunkT], emit: Emit[ChunkT], cancel: threading.Event) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        job = _Job(plan, emit, cancel, _resolver(loop, future))
        with self._wakeup:
            if self._closing:
                raise EngineError("The engine is closed")
            self._inbox.append(job)
            self.stats.waiting_requests += 1
            self._wakeup.notify()
        return future

    def close(self) -> None:
        """Stop within one step: running requests end with an error, waiting ones never start."""
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        self._thread.join()

    def free(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None

    # --- the loop -----------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not (self._inbox or self._waiting or self._active or self._closing):
                    self._wakeup.wait()
                self._waiting.extend(self._inbox)
                self._inbox.clear()
                closing = self._closing
            if closing:
                break
            started = time.perf_counter()
            try:
                batch_size = self._step()
            except BaseException as exc:  # a bug in the loop itself: fail everyone rather than hang them
                for job in [*self._active, *self._waiting]:
                    self._finish(job, exc, clear=True)
                self._waiting.clear()
                continue
            if batch_size:
                self.stats.batch_size.observe(batch_size)
                self.stats.step_seconds.observe(time.perf_counter() - started)
        for job in list(self._active):
            self._finish(job, EngineError("The engine was closed during generation"))
        for job in self._waiting:
            self._finish(job, EngineError("The engine was closed before this request ran"))
        self._waiting.clear()

    def _step(self) -> int:
        """One step; returns how many sequences the shared decode carried."""
        for job in [job for job in self._active if job.cancel.is_set()]:
            self._finish(job, None)
        for job in [job for job in self._waiting if job.cancel.is_set()]:
            self._waiting.remove(job)
            self._finish(job, None)
        free = sum(slot.owner is None for slot in self._slots)
        while self._waiting and self._waiting[0].plan.n <= free:
            job = self._waiting.popleft()
            free -= job.plan.n
            try:
                self._admit(job)
            except Exception as exc:
                self._finish(job, exc, clear=True)
        self.stats.waiting_requests = len(self._waiting) + len(self._inbox)

        decoding = [sequence for job in self._active for sequence in job.running]
        if decoding:
            self._decode_step(decoding)
        budget = self._prefill_budget
        # With nobody decoding, a piece delays no stream: read as much as one decode holds.
        largest = self._prefill_chunk if decoding else self._batch_capacity
        for job in [job for job in self._active if not job.prompt_done]:
            while budget > 0 and job in self._active and not job.prompt_done:
                try:
                    budget -= self._prefill_piece(job, largest)
                except Exception as exc:
                    self._finish(job, exc, clear=True)
        self.stats.running_sequences = sum(len(job.sequences) for job in self._active)
        self.stats.kv_cells_used = sum(len(slot.tokens) for slot in self._slots)
        return len(decoding)

    # --- admission ----------------------------------------------------------------------------------

    def _admit(self, job: _Job[Any]) -> None:
        plan = job.plan
        job.cuts = canonical_cuts(len(plan.prompt), plan.boundaries, self._prefill_chunk)
        job.sequences = self._start_sequences(plan)
        self._active.append(job)
        held = {slot.id for slot in self._slots if slot.owner is not None}
        free = [slot for slot in self._slots if slot.owner is None]

        def saved(slot: _Slot) -> int:
            # Keeping a few template tokens would throw away more of a cached prompt (one system prompt
            # among several) than it saves; such a slot counts as saving nothing.
            reuse = self._reusable(slot, job)
            return reuse if reuse >= slot.cuts[-1] - reuse else 0

        # Contiguity first: llama.cpp splits a decode step into one pass over the weights per run of
        # consecutive sequence ids (measured: 8 sequences 30 ms in order, 61 ms shuffled), which costs far
        # more over a generation than copying a cached prefix in from another sequence (about 5 ms).
        primary = min(free, key=lambda slot: (_runs(held | {slot.id}), -saved(slot), slot.last_used))
        chosen = [primary]
        held.add(primary.id)
        for _ in range(plan.n - 1):
            rest = [slot for slot in free if slot not in chosen]
            chosen.append(min(rest, key=lambda slot: (_runs(held | {slot.id}), slot.last_used)))
            held.add(chosen[-1].id)
        reuse = self._reusable(primary, job)
        if reuse < len(primary.tokens) and not self._lib.llama_memory_seq_rm(self._memory, primary.id, reuse, -1):
            self._lib.llama_memory_seq_rm(self._memory, primary.id, -1, -1)
            reuse = 0
        primary.keep(reuse)
        if reuse:
            self.stats.prefix_cache_hits += 1
            self.stats.prefix_cache_tokens += reuse
        for sequence, slot in zip(job.sequences, chosen, strict=True):
            slot.owner = job
            sequence.slot = slot

    def _reusable(self, slot: _Slot, job: _Job[Any]) -> int:
        """How many of ``slot``'s tokens ``job`` can keep: all those it shares with the prompt, but its last.

        Unless any grouping gives the same cache, only up to the last cut that both groupings share: the
        slot's pieces and the job's canonical ones (see :func:`canonical_cuts`) must start at the same
        places up to there. Generated tokens were decoded one by one, so a conversation's earlier answer is
        then reused only up to the message boundary (or cut) before it.
        """
        prompt = job.plan.prompt
        common = _common_prefix(slot.tokens, prompt, len(prompt) - 1)
        if self._any_grouping:
            return common
        kept = 0
        for mine, theirs in zip(job.cuts, slot.cuts, strict=False):
            if mine != theirs or mine > common:
                break
            kept = mine
        return kept

    def _start_sequences(self, plan: DecodePlan[ChunkT]) -> list[_Sequence]:
        sequences: list[_Sequence] = []
        try:
            for index, writer in enumerate(plan.make_writers()):
                seed = sequence_seed(plan.sampling.seed, index)
                chain = SamplerChain(self._vocab, self._n_vocab, plan.sampling, seed=seed, grammar=plan.grammar)
                fallback = None
                if plan.grammar_until_decided:
                    fallback = SamplerChain(self._vocab, self._n_vocab, plan.sampling, seed=seed, grammar=None)
                sequences.append(_Sequence(writer, chain, fallback))
        except BaseException:
            for sequence in sequences:
                sequence.close()
            raise
        return sequences

    def _finish(self, job: _Job[Any], error: BaseException | None, *, clear: bool = False) -> None:
        """Free the job's sequences (keeping their tokens as prefix cache unless ``clear``) and tell its consumer."""
        if job in self._active:
            self._active.remove(job)
        for sequence in job.sequences:
            sequence.close()
            slot = sequence.slot
            if slot is not None and slot.owner is job:
                slot.owner = None
                self._clock += 1
                slot.last_used = self._clock
                if clear:
                    self._lib.llama_memory_seq_rm(self._memory, slot.id, -1, -1)
                    slot.keep(0)
        if error is None:
            for sequence in job.sequences:
                if sequence.lookup is not None:
                    self._outputs.add(sequence.lookup.since(len(job.plan.prompt)))
        job.sequences = job.running = []
        job.emit(WorkerDone(error))
        job.release()

    # --- decoding -----------------------------------------------------------------------------------

    def _prefill_piece(self, job: _Job[Any], largest: int) -> int:
        """Evaluate the next piece of ``job``'s prompt (see ``_reusable``); returns its size.

        The piece is at most ``largest`` tokens, and the next canonical one unless any grouping will do.
        """
        prompt = job.plan.prompt
        primary = job.sequences[0].slot
        assert primary is not None
        self._copy_longer_prefix(primary, job)
        start = len(primary.tokens)
        if self._any_grouping:
            end = min(start + largest, len(prompt))
        else:
            end = job.cuts[bisect.bisect_right(job.cuts, start)]
        tokens, positions, n_seq_ids, seq_ids, logits = self._batch_fields
        for index in range(end - start):
            tokens[index] = prompt[start + index]
            positions[index] = start + index
            n_seq_ids[index] = 1
            seq_ids[index][0] = primary.id
            logits[index] = 0
        logits[end - start - 1] = 1 if end == len(prompt) else 0
        self._batch.n_tokens = end - start
        started = time.perf_counter()
        self._decode_batch()
        self.stats.prompt_decode_seconds += time.perf_counter() - started
        self.stats.prompt_decodes += 1
        primary.tokens.extend(prompt[start:end])
        primary.cuts.append(end)
        if end == len(prompt):
            self._start_output(job, primary)
        return end - start

    def _copy_longer_prefix(self, primary: _Slot, job: _Job[Any]) -> None:
        """Copy in the longest reusable prefix of ``prompt`` that any other sequence holds, if it is longer.

        Checked before every piece, not only at admission, so that requests with a common system prompt that
        arrive together evaluate it once: the first one's pieces are copied by the others as they come.
        """
        source = max(self._slots, key=lambda slot: self._reusable(slot, job))
        shared = self._reusable(source, job)
        if source is primary or shared <= len(primary.tokens):
            return
        # Streams are separate buffers, so llama.cpp copies the whole stream; the tail is cut right after.
        self._lib.llama_memory_seq_cp(self._memory, source.id, primary.id, -1, -1)
        if not self._lib.llama_memory_seq_rm(self._memory, primary.id, shared, -1):
            raise EngineError("llama.cpp could not trim a copied prefix")
        primary.tokens = source.tokens[:shared]
        primary.cuts = [cut for cut in source.cuts if cut <= shared]
        self.stats.prefix_cache_hits += 1
        self.stats.prefix_cache_tokens += shared

    def _start_output(self, job: _Job[Any], primary: _Slot) -> None:
        """The prompt is in: copy it to the other ``n - 1`` sequences and sample every first token."""
        for sequence in job.sequences[1:]:
            slot = sequence.slot
            assert slot is not None
            self._lib.llama_memory_seq_cp(self._memory, primary.id, slot.id, -1, -1)
            slot.tokens = list(primary.tokens)
            slot.cuts = list(primary.cuts)
        emitted: list[Emitted[Any]] = [
            item for sequence in job.sequences if (item := sequence.writer.start()) is not None
        ]
        job.running = list(job.sequences)
        lookup = PromptLookup(job.plan.prompt) if self._draft_max else None
        for sequence in job.sequences:
            sequence.logits_index = -1
            if lookup is not None:
                sequence.lookup = lookup.copy() if sequence is not job.sequences[0] else lookup
                sequence.budget = DraftBudget(self._draft_max, self._step_costs)
        self._advance(job, emitted)

    def _decode_step(self, decoding: list[_Sequence]) -> None:
        try:
            self._decode_next_tokens(decoding)
        except EngineError:
            self._decode_jobs_apart()
            return
        for job in [job for job in self._active if job.running]:
            try:
                self._advance(job, [])
            except Exception as exc:
                self._finish(job, exc, clear=True)

    def _decode_jobs_apart(self) -> None:
        """The shared decode failed: decode each request on its own, so only the one at fault fails."""
        for job in [job for job in self._active if job.running]:
            try:
                self._decode_step_of(job)
            except Exception as exc:
                self._finish(job, exc, clear=True)

    def _decode_step_of(self, job: _Job[Any]) -> None:
        self._decode_next_tokens(job.running)
        self._advance(job, [])

    def _decode_next_tokens(self, sequences: list[_Sequence]) -> None:
        """Decode each sequence's next token and its guesses in one batch, then record them in their slots.

        The batch lists the sequences by id: llama.cpp computes consecutive ids in one pass over the
        weights and starts another pass at every break in the order.
        """
        sequences = sorted(sequences, key=_slot_id)
        self._guess(sequences)
        tokens, positions, n_seq_ids, seq_ids, logits = self._batch_fields
        index = 0
        for sequence in sequences:
            slot = sequence.slot
            assert slot is not None
            sequence.logits_index = index
            for offset, token in enumerate([sequence.next_token, *sequence.draft]):
                tokens[index] = token
                positions[index] = len(slot.tokens) + offset
                n_seq_ids[index] = 1
                seq_ids[index][0] = slot.id
                logits[index] = 1
                index += 1
        self._batch.n_tokens = index
        started = time.perf_counter()
        self._decode_batch()
        seconds = time.perf_counter() - started
        self.stats.step_decode_seconds += seconds
        self.stats.step_decodes += 1
        if len(sequences) == 1:
            self._step_costs.observe(index, seconds)
        for sequence in sequences:
            assert sequence.slot is not None
            sequence.slot.tokens.append(sequence.next_token)
            sequence.slot.tokens.extend(sequence.draft)

    def _guess(self, sequences: list[_Sequence]) -> None:
        """Choose each sequence's guessed tokens for this step; they are verified when it samples.

        A guess is kept only where the sampled token equals it, and every position is sampled from its own
        logits with the sequence's own chain, so the output is what decoding one token at a time gives:
        the logits of a token are bitwise the same in a verify batch (see ``_splits``).
        """
        # The batch holds n_batch tokens: each sequence's token, its guesses and perhaps one more (below).
        share = self._batch_capacity // len(sequences) - 2
        # On a CPU a guessed token costs about what a real one does once the step carries tokens of several
        # sequences, so guesses pay only for a sequence decoded alone (BENCHMARKS.md, session 6: guessing in
        # company lost throughput at 4 and 8 streams).
        guessing = len(sequences) <= _GUESSING_COMPANY
        for sequence in sequences:
            sequence.draft = []
            sequence.forced = 0
            if not guessing:
                continue
            room = min(self._room(sequence), share)
            if sequence.budget is not None and sequence.lookup is not None:
                limit = min(sequence.budget.maximum, room)
                if limit > 0:
                    guess = sequence.lookup.guess(limit) or self._outputs.guess(sequence.lookup, limit)
                    sequence.draft = guess[: sequence.budget.allowance(len(guess))]
            grammar = sequence.chain.grammar
            if self._jump_forward is not None and grammar is not None:
                forced = self._jump_forward.replace(grammar, sequence.draft, room)
                if forced is not None:
                    if sequence.forced_budget is None:
                        sequence.forced_budget = DraftBudget(_MAX_FORCED_TOKENS, self._step_costs)
                    forced = forced[: sequence.forced_budget.allowance(len(forced))]
                    if forced:
                        sequence.draft = forced
                        sequence.forced = len(forced)
        if not self._guard_lone_tokens:
            return
        by_id = {_slot_id(sequence): sequence for sequence in sequences}
        for _ in sequences:
            lone = [
                by_id[seq_id]
                for seq_id in lone_single_tokens([(seq_id, 1 + len(by_id[seq_id].draft)) for seq_id in by_id])
                if self._long_stream(by_id[seq_id])
            ]
            if not lone:
                break
            for sequence in lone:
                sequence.draft.append(self._one_more_guess(sequence))

    def _room(self, sequence: _Sequence) -> int:
        """Guesses worth making: the output ends after ``max_new_tokens`` whatever is guessed."""
        owner = sequence.slot.owner if sequence.slot is not None else None
        assert owner is not None
        return owner.plan.max_new_tokens - sequence.generated - 1

    @staticmethod
    def _long_stream(sequence: _Sequence) -> bool:
        """Whether the sequence's KV view may reach 512 cells, where the lone-token attention path differs.

        llama.cpp pads the view to a multiple of 256 cells past the last one used; the margin covers
        cells left unused between tokens.
        """
        assert sequence.slot is not None
        return len(sequence.slot.tokens) + 1 + len(sequence.draft) > _LONG_STREAM

    @staticmethod
    def _one_more_guess(sequence: _Sequence) -> int:
        if sequence.lookup is not None:
            guess = sequence.lookup.guess(len(sequence.draft) + 1)
            if len(guess) > len(sequence.draft):
                return guess[len(sequence.draft)]
        return sequence.draft[-1] if sequence.draft else sequence.next_token

    def _advance(self, job: _Job[Any], emitted: list[Emitted[Any]]) -> None:
        """Sample the next token of each of ``job``'s running sequences from the last decode's logits."""
        lib, ctx, vocab = self._lib, self._ctx, self._vocab
        plan = job.plan
        max_new_tokens, top_logprobs = plan.max_new_tokens, plan.top_logprobs
        running: list[_Sequence] = []
        for sequence in job.running:
            writer = sequence.writer
            draft = sequence.draft
            row = sequence.logits_index
            accepted = 0
            while True:  # sample each verified position; a guess is kept where the sample equals it
                token = sequence.chain.sample(ctx, row, self._candidates)
                if lib.llama_vocab_is_eog(vocab, token):
                    emitted += writer.end_of_generation()
                    break
                logprobs = None if top_logprobs is None else self._logprobs(row, token, top_logprobs)
                item = writer.token(token, logprobs)
                if item is not None:
                    emitted.append(item)
                sequence.generated += 1
                if writer.stopped:
                    emitted += writer.finish("stop")
                    break
                if sequence.generated >= max_new_tokens:
                    emitted += writer.finish("length")
                    break
                if sequence.fallback is not None:
                    self._settle_grammar(sequence, token)
                if sequence.lookup is not None:
                    sequence.lookup.append(token)
                if accepted < len(draft) and token == draft[accepted]:
                    accepted += 1
                    row += 1
                    continue
                sequence.next_token = token
                running.append(sequence)
                break
            if draft:
                self._drop_guesses(sequence, len(draft) - accepted)
                if sequence.forced:
                    assert sequence.forced_budget is not None
                    self.stats.forced_tokens += sequence.forced
                    self.stats.forced_accepted_tokens += min(accepted, sequence.forced)
                    sequence.forced_budget.record(sequence.forced, min(accepted, sequence.forced))
                elif sequence.budget is not None:  # not the guard's guess while speculation is off
                    self.stats.drafted_tokens += len(draft)
                    self.stats.accepted_tokens += accepted
                    sequence.budget.record(len(draft), accepted)
                sequence.draft = []
        job.running = running
        if emitted:
            job.emit(emitted)
        if not running:
            self._finish(job, None)

    def _drop_guesses(self, sequence: _Sequence, count: int) -> None:
        """Remove the last ``count`` guessed tokens, which the output did not keep, from the sequence's stream."""
        slot = sequence.slot
        assert slot is not None
        if count:
            keep = len(slot.tokens) - count
            if not self._lib.llama_memory_seq_rm(self._memory, slot.id, keep, -1):
                raise EngineError("llama.cpp could not remove rejected guesses")
            del slot.tokens[keep:]

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

        logits = self._candidates.logits(self._ctx, logits_index)
        peak = float(logits.max())
        log_total = peak + float(np.log(np.exp(logits - peak).sum()))
        alternatives: list[tuple[int, float]] = []
        if top:
            best = np.argpartition(logits, -top)[-top:]
            best = best[np.argsort(-logits[best], kind="stable")]
            alternatives = [(int(candidate), float(logits[candidate]) - log_total) for candidate in best]
        return SampledLogprobs(float(logits[token]) - log_total, alternatives)
