"""The confidential endpoints on a real server, raw and through the chunkwise client."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import msgspec
import pytest

import chunkwise
from chunkwise.confidential import ClientSession, NodeKey, NodesCreateLockResponse
from chunkwise.signing import Signer, blake2b256, verify_sui_signature
from tests.server.conftest import RunningServer

from .conftest import GREEDY, MESSAGES, MODEL

pytestmark = pytest.mark.engine


def plain_request(stream: bool, **extra: Any) -> bytes:
    body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, **GREEDY, **extra}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def lock(http: httpx.Client) -> ClientSession:
    answer = http.post("/v1/nodes/lock", json={"model": MODEL})
    assert answer.status_code == 200
    return ClientSession(msgspec.json.decode(answer.content, type=NodesCreateLockResponse))


def events_of(text: str) -> list[str]:
    return [event.removeprefix("data: ") for event in text.split("\n\n") if event.startswith("data: ")]


def test_lock_answers_in_the_atoma_shape(unsigned_server: RunningServer) -> None:
    answer = httpx.post(f"{unsigned_server.url}/v1/nodes/lock", json={"model": MODEL, "max_num_tokens": 64})
    body = answer.json()
    assert answer.status_code == 200
    assert set(body) == {"public_key", "node_small_id", "stack_small_id", "stack_entry_digest"}
    assert len(base64.b64decode(body["public_key"])) == 32
    assert isinstance(body["stack_small_id"], int) and isinstance(body["node_small_id"], int)
    unknown = httpx.post(f"{unsigned_server.url}/v1/nodes/lock", json={"model": "gpt-4"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


def test_streamed_envelopes_have_fresh_nonces_and_plaintext_usage(unsigned_server: RunningServer) -> None:
    with httpx.Client(base_url=unsigned_server.url, timeout=60) as http:
        session = lock(http)
        envelope = session.seal_request(plain_request(True), model=MODEL, stream=True)
        answer = http.post("/v1/confidential/chat/completions", content=envelope)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in answer.text  # the Atoma TypeScript SDK reads every event as an envelope
    events = [json.loads(event) for event in events_of(answer.text)]
    assert len(events) >= 3
    nonces = [event["nonce"] for event in events]
    assert len(set(nonces)) == len(nonces), "two chunks of one stream share a nonce"
    chunks = []
    for event in events:
        assert list(event)[-2:] == ["signature", "response_hash"] and event["signature"] is None
        plaintext, _ = session.open_response(json.dumps(event).encode())
        assert base64.b64decode(event["response_hash"]) == chunkwise.signing.blake2b256(plaintext)
        chunks.append(json.loads(plaintext))
    assert [chunk["chunkwise_chain"]["seq"] for chunk in chunks] == list(range(len(chunks)))
    # Usage rides in the clear on the final envelope only, as the Atoma node sends it (for billing).
    assert [("usage" in event) for event in events] == [False] * (len(events) - 1) + [True]
    assert events[-1]["usage"] == chunks[-1]["usage"] and chunks[-1]["choices"] == []


def test_client_confidential_chat_matches_plain_chat(
    unsigned_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    with chunkwise.Client(base_url=f"{unsigned_server.url}/v1") as client:
        plain = client.chat.completions.create(model=MODEL, messages=MESSAGES, **GREEDY)
        secret = client.confidential.chat.completions.create(model=MODEL, messages=MESSAGES, **GREEDY)
        with client.confidential.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, **GREEDY
        ) as stream:
            texts = list(stream.iter_text())
            streamed = stream.final_completion()
    assert not [record for record in caplog.records if "nonce" in record.getMessage()]  # fresh nonces here
    assert secret.choices[0].message.content == plain.choices[0].message.content
    assert "".join(texts) == streamed.choices[0].message.content == plain.choices[0].message.content
    assert streamed.usage is not None and streamed.usage.completion_tokens == plain.usage.completion_tokens


@pytest.mark.anyio
async def test_async_client_confidential_chat(unsigned_server: RunningServer) -> None:
    async with chunkwise.AsyncClient(base_url=f"{unsigned_server.url}/v1") as client:
        secret = await client.confidential.chat.completions.create(model=MODEL, messages=MESSAGES, **GREEDY)
        stream = await client.confidential.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, **GREEDY
        )
        async with stream:
            chunks = [chunk async for chunk in stream]
            streamed = await stream.final_completion()
    assert streamed.choices[0].message.content == secret.choices[0].message.content
    assert chunks[-1].usage is not None


#: Each confidential route and a plain request it serves.
CONFIDENTIAL_ROUTES: dict[str, dict[str, Any]] = {
    "/v1/confidential/chat/completions": {"model": MODEL, "messages": MESSAGES, **GREEDY},
    "/v1/confidential/completions": {"model": MODEL, "prompt": "The sky is", **GREEDY},
    "/v1/confidential/embeddings": {"model": MODEL, "input": ["one", "two"]},
}


def post_envelope(
    server: RunningServer,
    change: Any = None,
    *,
    plaintext: bytes | None = None,
    stream: bool = False,
    path: str = "/v1/confidential/chat/completions",
) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        session = lock(http)
        request = (
            plaintext or json.dumps({**CONFIDENTIAL_ROUTES[path], **({"stream": True} if stream else {})}).encode()
        )
        body = json.loads(session.seal_request(request, model=MODEL, stream=stream))
        if change is not None:
            body = change(body)
        return http.post(path, json=body)


def flip(text: str) -> str:
    data = bytearray(base64.b64decode(text))
    data[0] ^= 1
    return base64.b64encode(bytes(data)).decode()


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        (lambda b: {k: v for k, v in b.items() if k != "salt"}, "salt", None),
        (lambda b: {**b, "nonce": "@@@@"}, "nonce", "invalid_envelope"),
        (lambda b: {**b, "stack_small_id": "one"}, "stack_small_id", None),
        (lambda b: {**b, "node_dh_public_key": NodeKey().public_key_base64}, "node_dh_public_key", "unknown_node_key"),
        (lambda b: {**b, "ciphertext": flip(b["ciphertext"])}, "ciphertext", "decryption_failed"),
        (
            lambda b: {**b, "plaintext_body_hash": flip(b["plaintext_body_hash"])},
            "plaintext_body_hash",
            "hash_mismatch",
        ),
        (lambda b: {**b, "stream": True}, "stream", None),
        (lambda b: {**b, "model_name": "other"}, "model_name", None),
    ],
)
@pytest.mark.parametrize("path", list(CONFIDENTIAL_ROUTES))
def test_bad_envelopes_get_a_clear_400(
    unsigned_server: RunningServer, change: Any, param: str, code: str | None, path: str
) -> None:
    answer = post_envelope(unsigned_server, change, path=path)
    error = answer.json()["error"]
    assert answer.status_code == 400, answer.text
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]
    if code is not None:
        assert error["code"] == code


def test_plaintext_problems_are_4xx_too(unsigned_server: RunningServer) -> None:
    not_json = post_envelope(unsigned_server, plaintext=b"\xff not json")
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    wrong_model = json.dumps({"model": "gpt-4", "messages": MESSAGES}).encode()
    answer = post_envelope(unsigned_server, lambda b: {**b, "model_name": "gpt-4"}, plaintext=wrong_model)
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "model_not_found"
    invalid = json.dumps({"model": MODEL, "messages": []}).encode()
    answer = post_envelope(unsigned_server, plaintext=invalid)
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request_error"
    garbage = httpx.post(f"{unsigned_server.url}/v1/confidential/chat/completions", content=b"{nope")
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "invalid_json"


SECRET_PLAINTEXTS: dict[str, dict[str, Any]] = {
    "role": {"model": MODEL, "messages": [{"role": "SECRET-ROLE", "content": "hi"}]},
    "schema": {
        "model": MODEL,
        "messages": MESSAGES,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "SECRET_NAME",
                "schema": {"type": "object", "properties": {"SECRET_FIELD": {"type": "string", "format": "email"}}},
            },
        },
    },
    "logit_bias": {"model": MODEL, "messages": MESSAGES, "logit_bias": {"SECRET-KEY": 1}},
    "tool": {"model": MODEL, "messages": MESSAGES, "tool_choice": {"type": "function", "function": {"name": "SECRET"}}},
    "prompt_size": {"model": MODEL, "messages": [{"role": "user", "content": "SECRET " * 9000}], "max_tokens": 4},
}


@pytest.mark.parametrize("case", sorted(SECRET_PLAINTEXTS))
@pytest.mark.parametrize("stream", [False, True])
def test_errors_about_a_decrypted_request_quote_nothing_of_it(
    unsigned_server: RunningServer, case: str, stream: bool
) -> None:
    fields = SECRET_PLAINTEXTS[case]
    plaintext = json.dumps({**fields, "stream": True} if stream else fields).encode()
    answer = post_envelope(unsigned_server, plaintext=plaintext, stream=stream)
    assert 400 <= answer.status_code < 500, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] is None
    assert "SECRET" not in answer.text and "9000" not in answer.text
    for word in ("role", "properties", "logit_bias", "tool", "tokens"):
        assert word not in error["message"]


def test_a_replayed_envelope_is_refused(unsigned_server: RunningServer) -> None:
    with httpx.Client(base_url=unsigned_server.url, timeout=60) as http:
        envelope = lock(http).seal_request(plain_request(False), model=MODEL, stream=False)
        first = http.post("/v1/confidential/chat/completions", content=envelope)
        again = http.post("/v1/confidential/chat/completions", content=envelope)
    assert first.status_code == 200, first.text
    assert again.status_code == 400 and again.json()["error"]["code"] == "replayed_envelope"


class OtherNodesLock(httpx.HTTPTransport):
    """Answers the lock itself, with another node's key (as a stale lock would); the rest goes to the server."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/nodes/lock"):
            lock = NodesCreateLockResponse(public_key=NodeKey().public_key_base64, node_small_id=0, stack_small_id=1)
            return httpx.Response(200, content=msgspec.json.encode(lock))
        return super().handle_request(request)


def test_a_wrong_node_key_is_a_clear_client_error(unsigned_server: RunningServer) -> None:
    with (
        chunkwise.Client(base_url=f"{unsigned_server.url}/v1", max_retries=0, transport=OtherNodesLock()) as client,
        pytest.raises(chunkwise.BadRequestError, match="not this server's key") as info,
    ):
        client.confidential.chat.completions.create(model=MODEL, messages=MESSAGES, **GREEDY)
    assert info.value.error is not None and info.value.error.code == "unknown_node_key"


def test_confidential_routes_need_the_api_key(engine: Any) -> None:
    from chunkwise.server import ServerSettings, create_app
    from tests.server.conftest import serve

    with serve(create_app(engine, ServerSettings(api_key="secret"))) as server:
        refused = httpx.post(f"{server.url}/v1/nodes/lock", json={"model": MODEL})
        assert refused.status_code == 401
        assert httpx.post(f"{server.url}/v1/confidential/chat/completions", json={}).status_code == 401
        with chunkwise.Client(base_url=f"{server.url}/v1", api_key="secret") as client:
            assert client.confidential.chat.completions.create(model=MODEL, messages=MESSAGES, **GREEDY).choices


@pytest.mark.parametrize("stream", [False, True])
def test_confidential_completions_match_plain_completions(
    signed_server: RunningServer, signer: Signer, stream: bool
) -> None:
    """Legacy completions sealed like chat: fresh nonces, chained and signed plaintext, usage in the clear."""
    request = {**CONFIDENTIAL_ROUTES["/v1/confidential/completions"], "max_tokens": 6}
    with httpx.Client(base_url=signed_server.url, timeout=60) as http:
        plain = http.post("/v1/completions", json=request).json()
        session = lock(http)
        body = json.dumps({**request, "stream": stream}).encode()
        answer = http.post(
            "/v1/confidential/completions", content=session.seal_request(body, model=MODEL, stream=stream)
        )
    assert answer.status_code == 200, answer.text
    envelopes = [json.loads(event) for event in events_of(answer.text)] if stream else [answer.json()]
    assert len({envelope["nonce"] for envelope in envelopes}) == len(envelopes)
    previous = base64.b64encode(blake2b256(body)).decode()
    pieces = []
    for seq, envelope in enumerate(envelopes):
        assert envelope["signature"], "a signing server signs every envelope"
        plaintext, _ = session.open_response(json.dumps(envelope).encode())
        verify_sui_signature(envelope["signature"], blake2b256(plaintext), signer.public_key)
        piece = json.loads(plaintext)
        assert piece["chunkwise_chain"] == {"seq": seq, "prev": previous}
        previous = envelope["response_hash"]
        pieces.append(piece)
    assert pieces[-1]["object"] == "text_completion"
    text = "".join(choice["text"] for piece in pieces for choice in piece["choices"])
    assert text == plain["choices"][0]["text"]
    assert envelopes[-1]["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]


def test_confidential_embeddings_match_plain_embeddings(signed_server: RunningServer, signer: Signer) -> None:
    request = CONFIDENTIAL_ROUTES["/v1/confidential/embeddings"]
    with httpx.Client(base_url=signed_server.url, timeout=60) as http:
        plain = http.post("/v1/embeddings", json=request).json()
        session = lock(http)
        answer = http.post(
            "/v1/confidential/embeddings",
            content=session.seal_request(json.dumps(request).encode(), model=MODEL, stream=False),
        )
    envelope = answer.json()
    assert answer.status_code == 200 and envelope["signature"]
    plaintext, _ = session.open_response(answer.content)
    verify_sui_signature(envelope["signature"], blake2b256(plaintext), signer.public_key)
    opened = json.loads(plaintext)
    assert [item["embedding"] for item in opened["data"]] == [item["embedding"] for item in plain["data"]]
    assert envelope["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"]
    assert opened["chunkwise_chain"]["seq"] == 0
