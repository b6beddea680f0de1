"""Sampling and output parameters on the real engine: stop, logprobs, logit_bias, penalties, limits, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chunkwise.engine import InvalidRequestError, LlamaCppEngine
from chunkwise.engine._sampling import Candidates, LogitBias, SamplerChain, SamplingConfig
from chunkwise.types import ChatCompletionChunk

from .support import chat, completion, content_of, finish_reason, run_chat, run_completion

pytestmark = [pytest.mark.engine, pytest.mark.anyio]


def token_texts(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [chunk.choices[0].delta.content for chunk in chunks if chunk.choices[0].delta.content]


# --- stop -----------------------------------------------------------------------------------------


async def test_a_stop_string_split_across_tokens_never_appears(engine: LlamaCppEngine):
    reference = await run_chat(engine, chat(max_tokens=24, temperature=0))
    pieces = token_texts(reference)
    full = "".join(pieces)
    # a stop string made of the end of one token and the start of the next
    for index in range(2, len(pieces) - 1):
        left, right = pieces[index], pieces[index + 1]
        if len(left) >= 2 and len(right) >= 2:
            stop = left[-2:] + right[:2]
            if full.find(stop) == len("".join(pieces[: index + 1])) - 2:
                break
    else:
        pytest.fail(f"no token boundary to split a stop string across in {pieces!r}")

    chunks = await run_chat(engine, chat(max_tokens=24, temperature=0, stop=["never-seen", stop]))
    text = content_of(chunks)
    assert text == full[: full.find(stop)]
    assert stop not in text
    assert finish_reason(chunks) == "stop"
    assert chunks[-1].choices[0].stop_reason == stop


async def test_text_held_back_for_a_stop_string_that_never_completes_is_released(engine: LlamaCppEngine):
    reference = content_of(await run_chat(engine, chat(max_tokens=12, temperature=0)))
    last_char = reference[-1]
    chunks = await run_chat(engine, chat(max_tokens=12, temperature=0, stop=last_char + "\u2603never"))
    assert content_of(chunks) == reference
    assert finish_reason(chunks) == "length"


async def test_a_stop_at_the_very_start_gives_an_empty_answer_with_the_role(engine: LlamaCppEngine):
    first = token_texts(await run_chat(engine, chat(max_tokens=2, temperature=0)))[0]
    chunks = await run_chat(engine, chat(max_tokens=8, temperature=0, stop=first))
    assert content_of(chunks) == ""
    assert finish_reason(chunks) == "stop"
    assert chunks[0].choices[0].delta.role == "assistant"


# --- logprobs -------------------------------------------------------------------------------------


async def test_logprobs_come_with_each_token_and_honour_top_logprobs(engine: LlamaCppEngine):
    generation = engine.prepare_chat(
        chat(max_tokens=6, temperature=0, logprobs=True, top_logprobs=3), request_id="x", created=0
    )
    chunks = [chunk async for chunk in generation.stream()]
    entries = [
        entry for chunk in chunks if chunk.choices[0].logprobs for entry in chunk.choices[0].logprobs.content or []
    ]
    assert len(entries) == generation.completion_tokens == 6
    for entry in entries:
        assert entry.logprob is not None and entry.logprob <= 0.0
        assert len(entry.top_logprobs) == 3
        alternatives = [top.logprob for top in entry.top_logprobs if top.logprob is not None]
        assert len(alternatives) == 3
        assert alternatives == sorted(alternatives, reverse=True)
        assert sum(math.exp(value) for value in alternatives) <= 1.0 + 1e-6
        # greedy picks the most likely token
        assert entry.token == entry.top_logprobs[0].token
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob)
        assert entry.bytes is not None and bytes(entry.bytes).decode() == entry.token
    assert "".join(entry.token for entry in entries) == content_of(chunks)


async def test_logprobs_without_alternatives(engine: LlamaCppEngine):
    chunks = await run_chat(engine, chat(max_tokens=2, temperature=0, logprobs=True))
    entries = [
        entry for chunk in chunks if chunk.choices[0].logprobs for entry in chunk.choices[0].logprobs.content or []
    ]
    assert len(entries) == 2
    assert all(entry.top_logprobs == [] for entry in entries)


async def test_no_logprobs_unless_asked(engine: LlamaCppEngine):
    chunks = await run_chat(engine, chat(max_tokens=2, temperature=0))
    assert all(chunk.choices[0].logprobs is None for chunk in chunks)


# --- logit_bias and penalties ---------------------------------------------------------------------


async def test_logit_bias_can_ban_and_force_tokens(engine: LlamaCppEngine):
    greedy = content_of(await run_chat(engine, chat(max_tokens=4, temperature=0)))
    first_token = engine.tokenize(token_texts(await run_chat(engine, chat(max_tokens=1, temperature=0)))[0])
    assert len(first_token) == 1
    banned = content_of(
        await run_chat(engine, chat(max_tokens=4, temperature=0, logit_bias={str(first_token[0]): -100}))
    )
    assert banned != greedy
    assert not banned.startswith(engine.detokenize(first_token))

    (star,) = engine.tokenize("*")
    forced = await run_chat(engine, chat(max_tokens=5, temperature=0.8, seed=1, logit_bias={str(star): 100}))
    assert content_of(forced) == "*****"


async def test_a_greedy_chain_selects_what_llama_cpps_greedy_sampler_selects(engine: LlamaCppEngine):
    # The engine takes a greedy chain's argmax itself (Candidates.argmax); llama.cpp's chain is the reference,
    # over the last decode's logits: unbiased, with the favourite banned, with a bias that makes the
    # runner-up tie with it exactly (the lower id wins), one that lifts it above, and two that lift the
    # runner-up and the third to the same logit above the favourite (given highest id first).
    await run_chat(engine, chat(max_tokens=1, temperature=0))
    lib, ctx, n_vocab = engine._lib, engine._ctx, engine._n_vocab
    logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).copy()
    favourite, runner_up, third = (int(token) for token in np.argsort(-logits, kind="stable")[:3])
    tie = float(logits[favourite] - logits[runner_up])
    assert logits[runner_up] + np.float32(tie) == logits[favourite]
    above = logits[favourite] + np.float32(1.0)
    lifts = {token: float(above - logits[token]) for token in sorted((runner_up, third), reverse=True)}
    assert all(logits[token] + np.float32(lift) == above for token, lift in lifts.items())
    candidates = Candidates(n_vocab)
    cases = [
        ({}, favourite),
        ({favourite: -100.0}, runner_up),
        ({runner_up: tie}, min(favourite, runner_up)),
        ({runner_up: tie + 1.0}, runner_up),
        (lifts, min(runner_up, third)),
    ]
    for bias, chosen in cases:
        chain = SamplerChain(
            engine._vocab, n_vocab, SamplingConfig(temperature=0, logit_bias=bias), seed=0, grammar=None
        )
        try:
            assert lib.llama_sampler_sample(chain.pointer, ctx, -1) == chosen
        finally:
            chain.close()
        assert candidates.argmax(ctx, -1, LogitBias.of(bias) if bias else None) == chosen


async def test_top_k_of_one_samples_the_greedy_answer_at_any_temperature(engine: LlamaCppEngine):
    greedy = content_of(await run_chat(engine, chat(max_tokens=12, temperature=0)))
    for seed in (1, 2, 3):
        hot = await run_chat(engine, chat(max_tokens=12, temperature=2.0, seed=seed, top_k=1))
        assert content_of(hot) == greedy
    # Without top_k the same heat wanders off the greedy path for at least one of the seeds.
    wandering = [
        content_of(await run_chat(engine, chat(max_tokens=12, temperature=2.0, seed=seed))) for seed in (1, 2, 3)
    ]
    assert any(text != greedy for text in wandering)


@pytest.mark.parametrize("key", ["not-a-number", "-1", "49152", "1e3"])
async def test_a_logit_bias_key_that_is_not_a_token_id_is_rejected(engine: LlamaCppEngine, key: str):
    with pytest.raises(InvalidRequestError) as caught:
        engine.prepare_chat(chat(logit_bias={key: 1.0}), request_id="x", created=0)
    assert caught.value.param == "logit_bias"


async def test_frequency_and_presence_penalties_break_repetition(engine: LlamaCppEngine):
    prompt = "cat, cat, cat, cat, cat, cat,"

    async def cats(**penalties: float) -> int:
        chunks = await run_completion(engine, completion(prompt, max_tokens=12, temperature=0, **penalties))
        return "".join(chunk.choices[0].text for chunk in chunks).count("cat")

    plain = await cats()
    assert plain >= 5
    assert await cats(frequency_penalty=2.0) < plain
    assert await cats(presence_penalty=2.0) < plain
    assert await cats(frequency_penalty=-2.0) >= plain


# --- limits and context ---------------------------------------------------------------------------


async def test_a_prompt_over_the_context_is_rejected_before_it_is_queued(engine: LlamaCppEngine):
    with pytest.raises(InvalidRequestError) as caught:
        engine.prepare_chat(chat("hello " * 9000), request_id="x", created=0)
    assert caught.value.param == "messages"
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.status == 400
    assert str(engine.context_length) in caught.value.message


async def test_max_tokens_beyond_the_context_is_clamped_and_ends_with_length(small_engine: LlamaCppEngine):
    room = 6
    prompt = [small_engine.tokenize(" the")[0]] * (small_engine.context_length - room)
    never_end = {"0": -100.0, "2": -100.0}  # SmolLM2's end-of-generation tokens
    generation = small_engine.prepare_completion(
        completion(prompt, max_tokens=1000, temperature=0, logit_bias=never_end), request_id="x", created=0
    )
    assert generation.max_new_tokens == room
    chunks = [chunk async for chunk in generation.stream()]
    assert generation.completion_tokens == room
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_each_of_n_choices_has_the_whole_room_beside_the_prompt(small_engine: LlamaCppEngine):
    # Each sequence has a KV stream of its own, so n choices do not split the room between them.
    room = 3
    prompt = [small_engine.tokenize(" the")[0]] * (small_engine.context_length - room)
    never_end = {"0": -100.0, "2": -100.0}
    generation = small_engine.prepare_completion(
        completion(prompt, n=2, max_tokens=1000, temperature=0, logit_bias=never_end), request_id="x", created=0
    )
    assert generation.max_new_tokens == room
    chunks = [chunk async for chunk in generation.stream()]
    choices = [choice for chunk in chunks for choice in chunk.choices]
    finished = {choice.index: choice.finish_reason for choice in choices if choice.finish_reason}
    assert finished == {0: "length", 1: "length"}
    assert generation.completion_tokens == 2 * room


@pytest.mark.parametrize("n", [1, 2])
async def test_a_prompt_that_fills_the_context_is_a_context_error(small_engine: LlamaCppEngine, n: int):
    prompt = [small_engine.tokenize(" the")[0]] * small_engine.context_length
    with pytest.raises(InvalidRequestError) as caught:
        small_engine.prepare_completion(completion(prompt, n=n), request_id="x", created=0)
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "prompt"
    assert "no room for a completion" in caught.value.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 9}, "n"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"functions": [{"name": "f"}]}, "functions"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]},
            "messages[0].content",
        ),
        (
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {
                        "role": "user",
                        "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}],
                    },
                ]
            },
            "messages[1].content",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "(?=look)ahead"}},
                }
            },
            "response_format",
        ),
    ],
)
async def test_values_the_engine_cannot_honour_name_their_parameter(engine: LlamaCppEngine, fields, param):
    with pytest.raises(InvalidRequestError) as caught:
        engine.prepare_chat(chat(**fields), request_id="x", created=0)
    assert caught.value.param == param
    assert caught.value.status == 400
