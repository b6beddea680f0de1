"""The client against answers shaped exactly like an Atoma node's (the Atoma cloud cannot be reached from tests).

The fake node below follows ATOMA_WIRE.md sections 4.3 and 4.4 and uses ``cryptography`` directly, not
chunkwise's code: one nonce for the whole stream, no chain links, ``signature``/``response_hash`` over the
plaintext chunk, usage in the clear once it appears, ``: keep-alive`` comments, and no ``[DONE]``. Its
chunks are canned; what is under test is that the client opens and checks this wire format.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import chunkwise

from .conftest import serve_asgi

MODEL = "meta-llama/Llama-3.3-70B-Instruct"
WORDS = ["Hello", " from", " an", " Atoma", " node"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class FakeAtomaNode:
    def __init__(self) -> None:
        self.secret = X25519PrivateKey.generate()
        self.signing = Ed25519PrivateKey.generate()

    def sign(self, body: bytes) -> tuple[str, str]:
        digest = hashlib.blake2b(body, digest_size=32).digest()
        public = self.signing.public_key().public_bytes_raw()
        return b64(bytes([0]) + self.signing.sign(digest) + public), b64(digest)

    async def lock(self, request: Request) -> Response:
        public = self.secret.public_key().public_bytes_raw()
        return JSONResponse(
            {"public_key": b64(public), "node_small_id": 7, "stack_small_id": 42, "stack_entry_digest": None}
        )

    async def confidential(self, request: Request) -> Response:
        envelope = await request.json()
        client_key = X25519PublicKey.from_public_bytes(base64.b64decode(envelope["client_dh_public_key"]))
        salt = base64.b64decode(envelope["salt"])
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"").derive(self.secret.exchange(client_key))
        aead = AESGCM(key)
        plaintext = aead.decrypt(base64.b64decode(envelope["nonce"]), base64.b64decode(envelope["ciphertext"]), None)
        assert hashlib.blake2b(plaintext, digest_size=32).digest() == base64.b64decode(envelope["plaintext_body_hash"])
        assert envelope["stack_small_id"] == 42
        usage = {"prompt_tokens": 9, "completion_tokens": len(WORDS), "total_tokens": 9 + len(WORDS)}
        if not envelope.get("stream"):
            body = json.dumps(
                {
                    "id": "chatcmpl-atoma",
                    "object": "chat.completion",
                    "created": 1,
                    "model": MODEL,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(WORDS)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
                separators=(",", ":"),
            ).encode()
            signature, response_hash = self.sign(body)
            nonce = os.urandom(12)
            sealed = {"nonce": b64(nonce), "ciphertext": b64(aead.encrypt(nonce, body, None))}
            return JSONResponse({**sealed, "response_hash": response_hash, "signature": signature, "usage": usage})
        stream_nonce = os.urandom(12)  # the Atoma node's one nonce per stream (section 4.4)

        def events() -> Iterator[bytes]:
            chunks: list[dict[str, Any]] = [
                {"index": 0, "delta": {"role": "assistant", "content": WORDS[0]}},
                *({"index": 0, "delta": {"content": word}} for word in WORDS[1:-1]),
                {"index": 0, "delta": {"content": WORDS[-1]}, "finish_reason": "stop"},
            ]
            bodies = [{"choices": [choice], "usage": None} for choice in chunks] + [{"choices": [], "usage": usage}]
            for fields in bodies:
                chunk = {
                    "id": "chatcmpl-atoma",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": MODEL,
                    **fields,
                }
                body = json.dumps(chunk, separators=(",", ":")).encode()
                signature, response_hash = self.sign(body)
                event: dict[str, Any] = {
                    "ciphertext": b64(aead.encrypt(stream_nonce, body, None)),
                    "nonce": b64(stream_nonce),
                }
                if fields["usage"] is not None:
                    event["usage"] = usage
                event |= {"signature": signature, "response_hash": response_hash}
                yield b": keep-alive\n\n"
                yield b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def atoma_node() -> Iterator[str]:
    node = FakeAtomaNode()
    app = Starlette(
        routes=[
            Route("/v1/nodes/lock", node.lock, methods=["POST"]),
            Route("/v1/confidential/chat/completions", node.confidential, methods=["POST"]),
        ]
    )
    with serve_asgi(app) as url:
        yield f"{url}/v1"


MESSAGES = [{"role": "user", "content": "Hi"}]


def test_confidential_stream_from_an_atoma_node(atoma_node: str, caplog: pytest.LogCaptureFixture) -> None:
    with (
        chunkwise.Client(base_url=atoma_node, api_key="atoma-key") as client,
        client.confidential.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream,
    ):
        text = "".join(stream.iter_text())
        completion = stream.final_completion()
    assert text == "".join(WORDS)
    assert completion.usage is not None and completion.usage.total_tokens == 9 + len(WORDS)
    warnings = [record for record in caplog.records if "reuses one AES-GCM nonce" in record.getMessage()]
    assert len(warnings) == 1  # once per stream, not once per chunk


@pytest.mark.anyio
async def test_confidential_completion_from_an_atoma_node(atoma_node: str) -> None:
    async with chunkwise.AsyncClient(base_url=atoma_node, api_key="atoma-key") as client:
        completion = await client.confidential.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert completion.choices[0].message.content == "".join(WORDS)
