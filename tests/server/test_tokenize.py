"""``POST /tokenize`` and ``POST /detokenize`` on a real server, in llama-server's and vLLM's shapes."""

from __future__ import annotations

import httpx
import pytest

from chunkwise.engine import LlamaCppEngine

from .conftest import MODEL
from .test_errors import assert_error_shape

pytestmark = pytest.mark.engine

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <|im_end|> there"}]


def test_text_round_trips(http: httpx.Client, engine: LlamaCppEngine) -> None:
    answer = http.post("/tokenize", json={"content": "Hello, world!"}).json()
    assert answer["tokens"] == engine.tokenize_prompt("Hello, world!")
    assert answer["count"] == len(answer["tokens"]) and answer["max_model_len"] == engine.context_length
    assert http.post("/tokenize", json={"prompt": "Hello, world!", "model": MODEL}).json() == answer
    text = http.post("/detokenize", json={"tokens": answer["tokens"]}).json()
    assert text == {"content": "Hello, world!", "prompt": "Hello, world!"}


def test_add_special_false_leaves_out_the_start_token(http: httpx.Client, engine: LlamaCppEngine) -> None:
    plain = http.post("/tokenize", json={"content": "Hello", "add_special": False}).json()["tokens"]
    assert plain == engine.tokenize("Hello")


def test_messages_count_what_a_chat_request_reads(http: httpx.Client) -> None:
    counted = http.post("/tokenize", json={"messages": CHAT}).json()["count"]
    usage = http.post("/v1/chat/completions", json={"model": MODEL, "messages": CHAT, "max_tokens": 1}).json()["usage"]
    assert counted == usage["prompt_tokens"]
    # Without the assistant's opened turn, fewer tokens: the template's generation prompt is left out.
    closed = http.post("/tokenize", json={"messages": CHAT, "add_generation_prompt": False}).json()
    assert 0 < closed["count"] < counted
    # The control token written in the user's content stays text, as in a chat request.
    assert "<|im_end|> there" in http.post("/detokenize", json={"tokens": closed["tokens"]}).json()["content"]


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/tokenize", {}, 400, "content"),
        ("/tokenize", {"content": "a", "messages": CHAT}, 400, "messages"),
        ("/tokenize", {"content": "a", "add_generation_prompt": True}, 400, "add_generation_prompt"),
        ("/tokenize", {"messages": CHAT, "add_special": True}, 400, "add_special"),
        ("/tokenize", {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
        ("/tokenize", {"content": "a", "model": "other"}, 404, "model"),
        ("/detokenize", {"tokens": [1, -5]}, 400, "tokens"),
        ("/detokenize", {"tokens": "abc"}, 400, "tokens"),
        ("/detokenize", {}, 400, "tokens"),
    ],
)
def test_refusals_are_openai_errors(
    http: httpx.Client, path: str, body: dict[str, object], status: int, param: str
) -> None:
    response = http.post(path, json=body)
    assert_error_shape(response, status, param=param, code=response.json()["error"]["code"])
