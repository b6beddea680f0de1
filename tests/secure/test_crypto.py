"""The sans-I/O core, without a server: envelopes, sealing, signatures, the chain and key files."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

import chunkwise
from chunkwise.confidential import (
    ClientSession,
    ConfidentialComputeRequest,
    NodeKey,
    NodesCreateLockResponse,
    derive_key,
    open_request,
)
from chunkwise.server import load_node_key, load_signer
from chunkwise.signing import ChainSealer, ChainVerifier, Signer, blake2b256, split_signed_json, verify_sui_signature

REQUEST = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'


def lock_for(node: NodeKey) -> NodesCreateLockResponse:
    return NodesCreateLockResponse(public_key=node.public_key_base64, node_small_id=0, stack_small_id=1)


def sealed(node: NodeKey, plaintext: bytes = REQUEST) -> tuple[ClientSession, ConfidentialComputeRequest]:
    session = ClientSession(lock_for(node))
    envelope = msgspec.json.decode(
        session.seal_request(plaintext, model="m", stream=True), type=ConfidentialComputeRequest
    )
    return session, envelope


def test_round_trip_and_fresh_nonces() -> None:
    node = NodeKey()
    session, envelope = sealed(node)
    opened = open_request(envelope, node)
    assert opened.plaintext == REQUEST
    assert opened.plaintext_hash == hashlib.blake2b(REQUEST, digest_size=32).digest() == session.request_hash

    bodies = [opened.sealer.seal(b'{"n":%d}' % i, response_hash="h", signature=None, usage=None) for i in range(50)]
    nonces = {json.loads(body)["nonce"] for body in bodies}
    assert len(nonces) == 50  # never one nonce per stream, as an Atoma node does
    for i, body in enumerate(bodies):
        assert session.open_response(body)[0] == b'{"n":%d}' % i


def test_key_derivation_matches_the_atoma_recipe() -> None:
    """HKDF-SHA256(salt, X25519 secret, info=b"") with AES-256-GCM, as the Atoma Python SDK computes it."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    node = NodeKey()
    client = X25519PrivateKey.generate()
    salt = bytes(range(16))
    shared = client.exchange(X25519PrivateKey.from_private_bytes(node.private_bytes()).public_key())
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"").derive(shared)
    assert derive_key(shared, salt) == expected
    assert node.agree(salt, client.public_key().public_bytes_raw()) == expected
    nonce = bytes(12)
    ciphertext = AESGCM(expected).encrypt(nonce, REQUEST, None)
    envelope = ConfidentialComputeRequest(
        ciphertext=base64.b64encode(ciphertext).decode(),
        nonce=base64.b64encode(nonce).decode(),
        salt=base64.b64encode(salt).decode(),
        client_dh_public_key=base64.b64encode(client.public_key().public_bytes_raw()).decode(),
        node_dh_public_key=node.public_key_base64,
        plaintext_body_hash=base64.b64encode(blake2b256(REQUEST)).decode(),
        stack_small_id=1,
        model_name="m",
    )
    assert open_request(envelope, node).plaintext == REQUEST


def replace(envelope: ConfidentialComputeRequest, **fields: object) -> ConfidentialComputeRequest:
    return msgspec.structs.replace(envelope, **fields)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def flip(text: str, index: int = 0) -> str:
    data = bytearray(base64.b64decode(text))
    data[index] ^= 1
    return base64.b64encode(bytes(data)).decode()


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        (lambda e, n: replace(e, nonce="AAAA"), "nonce", "invalid_envelope"),
        (lambda e, n: replace(e, salt="not base64!"), "salt", "invalid_envelope"),
        (
            lambda e, n: replace(e, client_dh_public_key=b64(b"x" * 31)),
            "client_dh_public_key",
            "invalid_envelope",
        ),
        (
            lambda e, n: replace(e, node_dh_public_key=NodeKey().public_key_base64),
            "node_dh_public_key",
            "unknown_node_key",
        ),
        (lambda e, n: replace(e, ciphertext=flip(e.ciphertext, 3)), "ciphertext", "decryption_failed"),
        (lambda e, n: replace(e, nonce=flip(e.nonce)), "ciphertext", "decryption_failed"),
        (lambda e, n: replace(e, salt=flip(e.salt)), "ciphertext", "decryption_failed"),
        (lambda e, n: replace(e, client_dh_public_key=NodeKey().public_key_base64), "ciphertext", "decryption_failed"),
        (
            lambda e, n: replace(e, client_dh_public_key=b64(bytes(32))),
            "client_dh_public_key",
            "invalid_envelope",
        ),
        (
            lambda e, n: replace(e, plaintext_body_hash=flip(e.plaintext_body_hash)),
            "plaintext_body_hash",
            "hash_mismatch",
        ),
    ],
)
def test_bad_envelopes_name_the_failed_check(change, param: str, code: str) -> None:
    node = NodeKey()
    _, envelope = sealed(node)
    with pytest.raises(chunkwise.EnvelopeError) as info:
        open_request(change(envelope, node), node)
    assert (info.value.param, info.value.code) == (param, code)


def test_decryption_failures_say_nothing_about_the_plaintext() -> None:
    """No decryption oracle: the answer to a forged ciphertext is the same whatever was encrypted."""
    node = NodeKey()
    messages = set()
    for plaintext in (REQUEST, b"{}", b"not json at all", bytes(200)):
        _, envelope = sealed(node, plaintext)
        with pytest.raises(chunkwise.EnvelopeError) as info:
            open_request(replace(envelope, ciphertext=flip(envelope.ciphertext, 1)), node)
        messages.add(str(info.value))
    assert len(messages) == 1


def test_tampered_response_envelopes_do_not_open() -> None:
    node = NodeKey()
    session, envelope = sealed(node)
    sealer = open_request(envelope, node).sealer
    body = json.loads(sealer.seal(b'{"a":1}', response_hash="h", signature=None, usage=None))
    for field, value in (("ciphertext", flip(body["ciphertext"], 2)), ("nonce", flip(body["nonce"]))):
        with pytest.raises(chunkwise.DecryptionError, match="does not decrypt"):
            session.open_response(json.dumps({**body, field: value}).encode())
    other_session, _ = sealed(node)  # another request's key
    with pytest.raises(chunkwise.DecryptionError):
        other_session.open_response(json.dumps(body).encode())
    with pytest.raises(chunkwise.DecryptionError, match="not a confidential response envelope"):
        session.open_response(b'{"id": "chatcmpl-1"}')


def test_sui_signature_form() -> None:
    signer = Signer()
    digest = blake2b256(b"x")
    raw = base64.b64decode(signer.sign_hash(digest))
    assert len(raw) == 97 and raw[0] == 0 and raw[65:] == signer.public_key
    verify_sui_signature(signer.sign_hash(digest), digest, signer.public_key)
    with pytest.raises(chunkwise.SignatureError, match="not by the pinned key"):
        verify_sui_signature(signer.sign_hash(digest), digest, Signer().public_key)
    with pytest.raises(chunkwise.SignatureError, match="does not verify"):
        verify_sui_signature(signer.sign_hash(digest), blake2b256(b"y"), None)


def chain(count: int, signer: Signer, root: bytes = b"r" * 32) -> list[bytes]:
    sealer = ChainSealer(root, signer)
    return [sealer.seal(b'{"id":"c","choices":[{"index":0,"delta":{"content":"%d"}}]}' % i) for i in range(count)]


def verify_all(bodies: list[bytes], key: bytes, root: bytes = b"r" * 32) -> None:
    verifier = ChainVerifier(root, key, require_chain=True)
    for body in bodies:
        verifier.check_signed_json(body)


def test_signed_bodies_keep_the_atoma_shape() -> None:
    signer = Signer()
    body = chain(1, signer)[0]
    decoded = json.loads(body)
    assert list(decoded)[-2:] == ["signature", "response_hash"]
    unsigned, signature, response_hash = split_signed_json(body)
    assert base64.b64decode(response_hash or "") == blake2b256(unsigned)  # the hash of the JSON without the two keys
    assert signature is not None
    verify_all(chain(5, signer), signer.public_key)


@pytest.mark.parametrize(
    ("tamper", "error", "match"),
    [
        (lambda b: b[:1] + b[2:], chunkwise.BrokenChainError, "expected chunk 1"),  # dropped
        (lambda b: [b[0], b[2], b[1], *b[3:]], chunkwise.BrokenChainError, "expected chunk 1"),  # reordered
        (lambda b: [b[0], b[0], *b[1:]], chunkwise.BrokenChainError, "expected chunk 1"),  # replayed
        (lambda b: [b[0], chain(3, Signer())[1]], chunkwise.SignatureError, "not by the pinned key"),
        (lambda b: [b[0].replace(b'"0"', b'"9"')], chunkwise.SignatureError, "does not match its content"),
        (lambda b: [split_signed_json(b[0])[0]], chunkwise.SignatureError, "not signed"),
    ],
)
def test_chain_and_signature_tampering(tamper, error: type[Exception], match: str) -> None:
    signer = Signer()
    with pytest.raises(error, match=match):
        verify_all(tamper(chain(4, signer)), signer.public_key)


def test_a_chunk_from_another_response_with_the_same_key_breaks_the_chain() -> None:
    signer = Signer()
    ours, theirs = chain(3, signer), chain(3, signer, root=b"s" * 32)
    with pytest.raises(chunkwise.BrokenChainError, match="does not follow chunk 0"):
        verify_all([ours[0], theirs[1]], signer.public_key)
    with pytest.raises(chunkwise.BrokenChainError, match="does not follow the request"):
        verify_all(theirs, signer.public_key)


def test_key_files_persist_and_rotate(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "node.pem"
    first, created = load_node_key(path)
    assert created and stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created = load_node_key(path)
    assert not created and again.public_key == first.public_key
    rotated, created = load_node_key(path, rotate=True)
    assert created and rotated.public_key != first.public_key
    assert load_node_key(path)[0].public_key == rotated.public_key

    signer_path = tmp_path / "signing.pem"
    signer, _ = load_signer(signer_path)
    assert load_signer(signer_path)[0].public_key == signer.public_key
    with pytest.raises(ValueError, match="not a X25519PrivateKey"):
        load_node_key(signer_path)
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(ValueError, match="does not hold an unencrypted PEM private key"):
        load_signer(tmp_path / "junk.pem")


def test_serve_prints_the_public_keys(tmp_path: Path) -> None:
    from rich.console import Console

    from chunkwise.cli._serve import _load_keys

    console = Console(record=True, width=200)
    node_key, signer = _load_keys(console, tmp_path / "node.pem", False, tmp_path / "signing.pem", False)
    printed = console.export_text()
    assert signer is not None
    assert f"Node key (X25519, confidential chat): {node_key.public_key_base64}" in printed
    assert f"Signing key (Ed25519): {signer.public_key_base64}" in printed
    assert "new, written to" in printed


def test_rotation_needs_a_key_file() -> None:
    from click.testing import CliRunner

    from chunkwise.cli import main

    result = CliRunner().invoke(main, ["serve", "--rotate-node-key"])
    assert result.exit_code == 2 and "--rotate-node-key needs --node-key-file" in result.output


def test_atoma_envelopes_without_the_optional_keys_open() -> None:
    node = NodeKey()
    session, envelope = sealed(node)
    body = json.loads(open_request(envelope, node).sealer.seal(b"{}", response_hash="h", signature=None, usage=None))
    minimal = json.dumps({"ciphertext": body["ciphertext"], "nonce": body["nonce"]}).encode()
    plaintext, received = session.open_response(minimal)
    assert plaintext == b"{}" and received.signature is None and received.response_hash is None


def test_a_confidential_answer_is_sealed_chunk_by_chunk_as_it_is_encoded() -> None:
    """Each chunk becomes one envelope event as it is encoded; usage stays in the clear, and no [DONE] follows."""
    from chunkwise.server._framing import ConfidentialFramer, FramedEncoding
    from chunkwise.types import ChatCompletionChunk

    node = NodeKey()
    session, envelope = sealed(node)
    opened = open_request(envelope, node)
    encoding = FramedEncoding(ConfidentialFramer(ChainSealer(opened.plaintext_hash, None), opened.sealer))
    chunks = [
        msgspec.json.decode(raw, type=ChatCompletionChunk)
        for raw in (
            b'{"id":"c","choices":[{"index":0,"delta":{"content":"a"}}]}',
            b'{"id":"c","choices":[{"index":0,"delta":{"content":"b"},"finish_reason":"stop"}]}',
            b'{"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}',
        )
    ]
    events = [encoding.event(chunk) for chunk in chunks]
    assert encoding.end() == b""  # confidential streams end without [DONE]
    verifier = ChainVerifier(opened.plaintext_hash, None, require_chain=True)
    contents = []
    for event in events:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n") and event.count(b"\n") == 2
        plaintext, received = session.open_response(event.removeprefix(b"data: "))
        verifier.check(plaintext, received.response_hash, received.signature)
        contents.append(json.loads(plaintext))
    assert [c["choices"][0]["delta"]["content"] for c in contents[:2]] == ["a", "b"]
    assert json.loads(events[2].removeprefix(b"data: "))["usage"]["total_tokens"] == 3  # in the clear


def test_a_sealed_answer_writes_its_errors_without_their_words() -> None:
    """An error frame or error body about a decrypted request keeps status, type and code, and nothing else."""
    from chunkwise.server._framing import PLAIN, ConfidentialFramer, FramedEncoding, SignedFramer
    from chunkwise.types import ErrorDetail

    node = NodeKey()
    _, envelope = sealed(node)
    opened = open_request(envelope, node)
    sealed_answer = FramedEncoding(ConfidentialFramer(ChainSealer(opened.plaintext_hash, None), opened.sealer))
    detail = ErrorDetail(
        message="Invalid value 'SECRET-ROLE'", type="invalid_request_error", param="messages[0].role", code="bad"
    )
    for written in (sealed_answer.errors.event(400, detail), sealed_answer.errors.body(400, detail)):
        error = json.loads(written.removeprefix(b"data: "))["error"]
        assert b"SECRET" not in written and error["param"] is None
        assert (error["type"], error["code"]) == ("invalid_request_error", "bad")
    signed = FramedEncoding(SignedFramer(ChainSealer(b"\0" * 32, None)))
    for encoding in (PLAIN, signed):  # answers in the clear keep their errors as they are
        assert b"SECRET-ROLE" in encoding.errors.body(400, detail)
