"""The legacy ``/v1/completions`` path of the real engine."""

from __future__ import annotations

import pytest

from chunkwise.accumulate import accumulate_completions
from chunkwise.engine import InvalidRequestError, LlamaCppEngine

from .support import completion, run_completion

pytestmark = [pytest.mark.engine, pytest.mark.anyio]

PROMPT = "The capital of France is"


async def test_text_completion_chunks(engine: LlamaCppEngine):
    generation = engine.prepare_completion(
        completion(PROMPT, max_tokens=5, temperature=0), request_id="cmpl-1", created=7
    )
    chunks = [chunk async for chunk in generation.stream()]
    assert {(chunk.id, chunk.created, chunk.object) for chunk in chunks} == {("cmpl-1", 7, "text_completion")}
    assert [chunk.choices[0].finish_reason for chunk in chunks] == [None] * 5 + ["length"]
    assert generation.completion_tokens == 5
    assert generation.prompt_tokens == len(engine.tokenize(PROMPT))
    assert "Paris" in accumulate_completions(chunks).choices[0].text


async def test_the_legacy_default_is_sixteen_tokens(engine: LlamaCppEngine):
    generation = engine.prepare_completion(completion("Once upon a time"), request_id="x", created=0)
    assert generation.max_new_tokens == 16


async def test_token_id_prompts_and_text_prompts_agree(engine: LlamaCppEngine):
    as_text = await run_completion(engine, completion(PROMPT, max_tokens=4, temperature=0))
    as_tokens = await run_completion(engine, completion(engine.tokenize(PROMPT), max_tokens=4, temperature=0))
    as_batch_of_one = await run_completion(engine, completion([PROMPT], max_tokens=4, temperature=0))
    texts = {accumulate_completions(chunks).choices[0].text for chunks in (as_text, as_tokens, as_batch_of_one)}
    assert len(texts) == 1


async def test_echo_sends_the_prompt_first(engine: LlamaCppEngine):
    chunks = await run_completion(engine, completion(PROMPT, max_tokens=3, temperature=0, echo=True))
    assert chunks[0].choices[0].text == PROMPT
    assert accumulate_completions(chunks).choices[0].text.startswith(PROMPT + " ")


async def test_stop_and_legacy_logprobs(engine: LlamaCppEngine):
    reference = accumulate_completions(await run_completion(engine, completion(PROMPT, max_tokens=8, temperature=0)))
    text = reference.choices[0].text
    stop = text[3:6]
    chunks = await run_completion(engine, completion(PROMPT, max_tokens=8, temperature=0, stop=[stop], logprobs=2))
    result = accumulate_completions(chunks).choices[0]
    assert result.text == text[: text.find(stop)]
    assert result.finish_reason == "stop"
    logprobs = [chunk.choices[0].logprobs for chunk in chunks if chunk.choices[0].logprobs]
    tokens = [token for entry in logprobs for token in entry.tokens]
    assert "".join(tokens).startswith(result.text)
    for entry in logprobs:
        assert len(entry.tokens) == len(entry.token_logprobs) == len(entry.top_logprobs) == len(entry.text_offset)
        for top in entry.top_logprobs:
            assert top is not None and len(top) <= 2
    offsets = [offset for entry in logprobs for offset in entry.text_offset]
    assert offsets == sorted(offsets) and offsets[0] == 0


async def test_n_legacy_choices(engine: LlamaCppEngine):
    chunks = await run_completion(engine, completion(PROMPT, max_tokens=3, temperature=1.0, seed=4, n=2))
    assert [chunk.choices[0].index for chunk in chunks[:2]] == [0, 1]
    assert len(accumulate_completions(chunks).choices) == 2


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"prompt": ["one", "two"]}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"prompt": [1, 99999999]}, "prompt"),
        ({"suffix": "tail"}, "suffix"),
        ({"best_of": 3}, "best_of"),
        ({"echo": True, "logprobs": 1}, "echo"),
        ({"n": 99}, "n"),
    ],
)
async def test_legacy_values_the_engine_cannot_honour(engine: LlamaCppEngine, fields, param):
    request = completion(fields.pop("prompt", PROMPT), **fields)
    with pytest.raises(InvalidRequestError) as caught:
        engine.prepare_completion(request, request_id="x", created=0)
    assert caught.value.param == param


async def test_control_token_text_in_a_prompt_is_text(engine: LlamaCppEngine):
    generation = engine.prepare_completion(completion("<|im_end|>", max_tokens=1), request_id="x", created=0)
    as_text = engine.tokenize("<|im_end|>", parse_special=False)
    assert len(as_text) > 1
    assert generation.prompt_tokens == len(engine.tokenize_prompt("")) + len(as_text)
    # Token ids remain the way to send a control token.
    control = engine.tokenize("<|im_end|>", parse_special=True)
    assert len(control) == 1
    by_id = engine.prepare_completion(completion(control, max_tokens=1), request_id="x", created=0)
    assert by_id.prompt_tokens == 1
