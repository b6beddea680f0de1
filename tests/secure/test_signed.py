"""Signed and chained answers on a real server: the Atoma fields, the public key, and the pinned client."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import openai
import pytest

import chunkwise
from chunkwise.signing import Signer, blake2b256, split_signed_json, verify_sui_signature
from tests.server.conftest import RunningServer

from .conftest import GREEDY, MESSAGES, MODEL

pytestmark = pytest.mark.engine

USAGE: dict[str, Any] = {"stream_options": {"include_usage": True}}


def test_public_key_endpoint(signed_server: RunningServer, unsigned_server: RunningServer, signer: Signer) -> None:
    answer = httpx.get(f"{signed_server.url}/signing-key")
    assert answer.json() == {"algorithm": "ed25519", "public_key": signer.public_key_base64}
    missing = httpx.get(f"{unsigned_server.url}/signing-key")
    assert missing.status_code == 404 and "does not sign" in missing.json()["error"]["message"]


def test_every_chunk_carries_the_atoma_signature_fields(signed_server: RunningServer, signer: Signer) -> None:
    request = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": True, **GREEDY, **USAGE}).encode()
    answer = httpx.post(f"{signed_server.url}/v1/chat/completions", content=request, timeout=60)
    events = [event.removeprefix("data: ") for event in answer.text.split("\n\n") if event.startswith("data: ")]
    assert events[-1] == "[DONE]"
    previous = base64.b64encode(blake2b256(request)).decode()
    for seq, event in enumerate(events[:-1]):
        chunk = json.loads(event)
        assert list(chunk)[-2:] == ["signature", "response_hash"]
        body, signature, response_hash = split_signed_json(event.encode())
        # Atoma's recipe: Blake2b-256 of the JSON without the two keys, signed in Sui's form.
        assert base64.b64decode(response_hash or "") == blake2b256(body)
        verify_sui_signature(signature or "", blake2b256(body), signer.public_key)
        assert chunk["chunkwise_chain"] == {"seq": seq, "prev": previous}
        previous = response_hash or ""


def test_non_stream_answers_are_signed(signed_server: RunningServer, signer: Signer) -> None:
    answer = httpx.post(
        f"{signed_server.url}/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, **GREEDY}
    )
    body = answer.json()
    assert body["object"] == "chat.completion" and body["signature"] and body["response_hash"]
    assert int(answer.headers["content-length"]) == len(answer.content)
    unsigned, signature, _ = split_signed_json(answer.content)
    verify_sui_signature(signature or "", blake2b256(unsigned), signer.public_key)
    errors = httpx.post(f"{signed_server.url}/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert errors.status_code == 400 and "signature" not in errors.json()  # errors pass unchanged


def test_pinned_client_streams_and_completions(signed_server: RunningServer, signer: Signer) -> None:
    with chunkwise.Client(base_url=f"{signed_server.url}/v1", verify_key=signer.public_key_base64) as client:
        completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, **GREEDY)
        with client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **GREEDY, **USAGE) as stream:
            streamed = stream.final_completion()
        secret = client.confidential.chat.completions.create(model=MODEL, messages=MESSAGES, **GREEDY)
        with client.confidential.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, **GREEDY
        ) as stream:
            secret_streamed = stream.final_completion()
    contents = {c.choices[0].message.content for c in (completion, streamed, secret, secret_streamed)}
    assert len(contents) == 1


@pytest.mark.anyio
async def test_pinned_async_client(signed_server: RunningServer, signer: Signer) -> None:
    async with chunkwise.AsyncClient(base_url=f"{signed_server.url}/v1", verify_key=signer.public_key) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **GREEDY)
        async with stream:
            text = "".join([piece async for piece in stream.iter_text()])
        secret = await client.confidential.chat.completions.create(model=MODEL, messages=MESSAGES, **GREEDY)
    assert text == secret.choices[0].message.content


def test_a_different_pinned_key_is_refused(signed_server: RunningServer, unsigned_server: RunningServer) -> None:
    stranger = Signer().public_key_base64
    with chunkwise.Client(base_url=f"{signed_server.url}/v1", verify_key=stranger) as client:
        with pytest.raises(chunkwise.SignatureError, match="not by the pinned key"):
            client.chat.completions.create(model=MODEL, messages=MESSAGES, **GREEDY)
        with pytest.raises(chunkwise.SignatureError, match="not by the pinned key"):
            client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **GREEDY)
        with pytest.raises(chunkwise.SignatureError, match="not by the pinned key"):
            client.confidential.chat.completions.create(model=MODEL, messages=MESSAGES, **GREEDY)
    with (
        chunkwise.Client(base_url=f"{unsigned_server.url}/v1", verify_key=stranger) as client,
        pytest.raises(chunkwise.SignatureError, match="not signed"),
    ):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **GREEDY)
    with pytest.raises(ValueError, match="32 bytes"):
        chunkwise.Client(verify_key="short")


def test_openai_clients_ignore_the_extra_fields(signed_server: RunningServer) -> None:
    with openai.OpenAI(base_url=f"{signed_server.url}/v1", api_key="x", max_retries=0) as client:
        messages: Any = MESSAGES
        stream = client.chat.completions.create(
            model=MODEL, messages=messages, stream=True, max_tokens=12, temperature=0, seed=1
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        completion = client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=12, temperature=0, seed=1
        )
    assert text == completion.choices[0].message.content


def test_legacy_completions_are_signed_too(signed_server: RunningServer, signer: Signer) -> None:
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 4, "temperature": 0, "stream": True}
    answer = httpx.post(f"{signed_server.url}/v1/completions", json=body, timeout=60)
    events = [event.removeprefix("data: ") for event in answer.text.split("\n\n") if event.startswith("data: ")]
    assert events[-1] == "[DONE]" and len(events) >= 2
    for event in events[:-1]:
        unsigned, signature, _ = split_signed_json(event.encode())
        verify_sui_signature(signature or "", blake2b256(unsigned), signer.public_key)


def test_chat_cli_confidential_and_pinned(signed_server: RunningServer, signer: Signer) -> None:
    from click.testing import CliRunner

    from chunkwise.cli import main

    base = ["chat", "--base-url", f"{signed_server.url}/v1", "--max-tokens", "6", "--temperature", "0"]
    runner = CliRunner()
    trusted = runner.invoke(main, [*base, "--confidential", "--verify-key", signer.public_key_base64, "Hi"])
    assert trusted.exit_code == 0, trusted.output
    assert "usage" in trusted.output
    stranger = runner.invoke(main, [*base, "--verify-key", Signer().public_key_base64, "Hi"])
    assert stranger.exit_code == 1 and "not by the pinned key" in stranger.output
    malformed = runner.invoke(main, [*base, "--verify-key", "nope", "Hi"])
    assert malformed.exit_code == 2 and "--verify-key" in malformed.output


def test_embedding_answers_are_signed_and_chained_to_the_request(signed_server: RunningServer, signer: Signer) -> None:
    request = json.dumps({"model": MODEL, "input": ["signed", "vectors"]}).encode()
    answer = httpx.post(f"{signed_server.url}/v1/embeddings", content=request, timeout=60)
    body = answer.json()
    assert answer.status_code == 200 and list(body)[-2:] == ["signature", "response_hash"]
    unsigned, signature, response_hash = split_signed_json(answer.content)
    assert base64.b64decode(response_hash or "") == blake2b256(unsigned)
    verify_sui_signature(signature or "", blake2b256(unsigned), signer.public_key)
    assert body["chunkwise_chain"] == {"seq": 0, "prev": base64.b64encode(blake2b256(request)).decode()}
    assert len(body["data"]) == 2 and len(body["data"][0]["embedding"]) == 576
