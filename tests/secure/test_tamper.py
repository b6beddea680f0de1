"""A scripted man in the middle alters answers in transit; every alteration is a clear client error.

The relay (see ``conftest.ManInTheMiddle``) sits on loopback between a real client and a real signed
server. Confidential calls are checked without a pinned key unless a test says otherwise: the
encryption alone (a fresh nonce per chunk, and the chain inside the plaintext) must catch them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

import chunkwise
from chunkwise.confidential import NodeKey
from chunkwise.signing import Signer

from .conftest import GREEDY, MESSAGES, MODEL, ManInTheMiddle

pytestmark = pytest.mark.engine

Relay = tuple[ManInTheMiddle, str]


def parsed(event: bytes) -> dict[str, Any]:
    return json.loads(event.removeprefix(b"data: "))  # type: ignore[no-any-return]


def event(fields: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(fields, separators=(",", ":")).encode()


def flip_base64(text: str, index: int = 0) -> str:
    data = bytearray(base64.b64decode(text))
    data[index] ^= 0x01
    return base64.b64encode(bytes(data)).decode()


def with_field(events: list[bytes], index: int, **fields: Any) -> list[bytes]:
    changed = list(events)
    changed[index] = event({**parsed(events[index]), **fields})
    return changed


def swapped(events: list[bytes], first: int, second: int) -> list[bytes]:
    changed = list(events)
    changed[first], changed[second] = changed[second], changed[first]
    return changed


def swap_nonces(events: list[bytes]) -> list[bytes]:
    one, two = parsed(events[1]), parsed(events[2])
    return with_field(with_field(events, 1, nonce=two["nonce"]), 2, nonce=one["nonce"])


def read_stream(url: str, *, confidential: bool, verify_key: bytes | None = None) -> chunkwise.ChatCompletion:
    with chunkwise.Client(base_url=f"{url}/v1", max_retries=0, verify_key=verify_key) as client:
        stream: chunkwise.Stream
        if confidential:
            stream = client.confidential.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **GREEDY)
        else:
            stream = client.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}, **GREEDY
            )
        with stream:
            return stream.final_completion()


def test_the_untouched_relay_works(mitm: Relay, signer: Signer) -> None:
    relay, url = mitm
    assert read_stream(url, confidential=True).choices[0].message.content
    assert read_stream(url, confidential=False, verify_key=signer.public_key).choices[0].message.content
    assert len(relay.tamper.streams) == 2


#: An error frame such as anyone on the path can send: it carries no signature and no envelope.
INJECTED_ERROR = event({"error": {"message": "engine failed", "type": "server_error", "param": None, "code": None}})

CONFIDENTIAL_TAMPERING: list[tuple[str, Callable[[list[bytes]], list[bytes]], type[Exception], str]] = [
    (
        "flipped ciphertext byte",
        lambda events: with_field(events, 1, ciphertext=flip_base64(parsed(events[1])["ciphertext"], 5)),
        chunkwise.DecryptionError,
        "does not decrypt",
    ),
    ("swapped nonce", swap_nonces, chunkwise.DecryptionError, "does not decrypt"),
    ("dropped chunk", lambda events: events[:2] + events[3:], chunkwise.BrokenChainError, "expected chunk 2"),
    ("reordered chunks", lambda events: swapped(events, 1, 2), chunkwise.BrokenChainError, "expected chunk 1"),
    ("dropped final chunk", lambda events: events[:-1], chunkwise.BrokenChainError, "final usage chunk"),
    ("cut short at the end", lambda events: events[:3], chunkwise.BrokenChainError, "without finishing"),
    ("injected error frame", lambda events: [*events[:2], INJECTED_ERROR], chunkwise.SignatureError, "not signed"),
]


@pytest.mark.parametrize(
    ("name", "tamper", "error", "match"), CONFIDENTIAL_TAMPERING, ids=[t[0] for t in CONFIDENTIAL_TAMPERING]
)
def test_confidential_stream_tampering(
    mitm: Relay, name: str, tamper: Callable[[list[bytes]], list[bytes]], error: type[Exception], match: str
) -> None:
    relay, url = mitm
    relay.tamper.events = tamper
    with pytest.raises(error, match=match):
        read_stream(url, confidential=True)


def test_confidential_chunk_replayed_from_another_stream(mitm: Relay) -> None:
    relay, url = mitm
    read_stream(url, confidential=True)
    earlier = relay.tamper.streams[0]
    relay.tamper.events = lambda events: [*events[:2], earlier[2], *events[3:]]
    with pytest.raises(chunkwise.DecryptionError):  # the other stream had its own key
        read_stream(url, confidential=True)


def test_confidential_answer_tampering(mitm: Relay) -> None:
    relay, url = mitm
    relay.tamper.body = lambda body: json.dumps(
        {**json.loads(body), "ciphertext": flip_base64(json.loads(body)["ciphertext"])}
    ).encode()
    with (
        chunkwise.Client(base_url=f"{url}/v1", max_retries=0) as client,
        pytest.raises(chunkwise.DecryptionError, match="does not decrypt"),
    ):
        client.confidential.chat.completions.create(model=MODEL, messages=MESSAGES, **GREEDY)


def swap_lock_key(body: bytes) -> bytes:
    # Compact, as the server writes it, so that only the key differs from the signed original.
    return json.dumps({**json.loads(body), "public_key": NodeKey().public_key_base64}, separators=(",", ":")).encode()


def test_wrong_server_key(mitm: Relay, signer: Signer) -> None:
    relay, url = mitm
    relay.tamper.lock = swap_lock_key
    # Unpinned: the server refuses an envelope for a key that is not its own.
    with pytest.raises(chunkwise.BadRequestError, match="not this server's key"):
        read_stream(url, confidential=True)
    # Pinned: the lock answer is signed, so the swap is caught before anything is encrypted to the wrong key.
    with pytest.raises(chunkwise.SignatureError, match="does not match its content"):
        read_stream(url, confidential=True, verify_key=signer.public_key)


SIGNED_TAMPERING: list[tuple[str, Callable[[list[bytes]], list[bytes]], type[Exception], str]] = [
    (
        "changed content",
        lambda events: [events[0], events[1].replace(b'"content":"', b'"content":"X', 1), *events[2:]],
        chunkwise.SignatureError,
        "does not match its content",
    ),
    ("dropped chunk", lambda events: events[:2] + events[3:], chunkwise.BrokenChainError, "expected chunk 2"),
    ("reordered chunks", lambda events: swapped(events, 1, 2), chunkwise.BrokenChainError, "expected chunk 1"),
    (
        "cut short before [DONE]",
        lambda events: [*events[:2], events[-1]],
        chunkwise.BrokenChainError,
        "before choice 0",
    ),
    ("cut short at the end", lambda events: events[:3], chunkwise.BrokenChainError, "without finishing"),
    ("injected error frame", lambda events: [*events[:2], INJECTED_ERROR], chunkwise.SignatureError, "not signed"),
    (
        "signature stripped",
        lambda events: [events[0].split(b',"signature"')[0] + b"}", *events[1:]],
        chunkwise.SignatureError,
        "not signed",
    ),
]


@pytest.mark.parametrize(("name", "tamper", "error", "match"), SIGNED_TAMPERING, ids=[t[0] for t in SIGNED_TAMPERING])
def test_signed_stream_tampering(
    mitm: Relay,
    signer: Signer,
    name: str,
    tamper: Callable[[list[bytes]], list[bytes]],
    error: type[Exception],
    match: str,
) -> None:
    relay, url = mitm
    relay.tamper.events = tamper
    with pytest.raises(error, match=match):
        read_stream(url, confidential=False, verify_key=signer.public_key)


@pytest.mark.parametrize(
    "cut",
    [lambda events: events[:3], lambda events: [*events[:3], events[-1]]],
    ids=["without [DONE]", "with the unsigned [DONE]"],
)
def test_a_checked_stream_cut_short_is_also_incomplete(
    mitm: Relay, signer: Signer, cut: Callable[[list[bytes]], list[bytes]]
) -> None:
    """Cut at the end, a checked stream's chain is broken; it is incomplete too, with what did arrive."""
    relay, url = mitm
    relay.tamper.events = cut
    with pytest.raises(chunkwise.IncompleteChainError) as info:
        read_stream(url, confidential=False, verify_key=signer.public_key)
    error = info.value
    assert isinstance(error, chunkwise.BrokenChainError) and isinstance(error, chunkwise.IncompleteStreamError)
    sent = [parsed(event)["choices"][0]["delta"].get("content") or "" for event in relay.tamper.streams[-1][:3]]
    assert error.chunks_received == 3 and error.partial.choices[0].message.content == "".join(sent)


def test_signed_chunk_replayed_from_another_stream(mitm: Relay, signer: Signer) -> None:
    relay, url = mitm
    read_stream(url, confidential=False, verify_key=signer.public_key)
    earlier = relay.tamper.streams[0]
    relay.tamper.events = lambda events: [*events[:2], earlier[2], *events[3:]]
    with pytest.raises(chunkwise.BrokenChainError, match="does not follow chunk 1"):
        read_stream(url, confidential=False, verify_key=signer.public_key)


def test_a_tampered_stream_fails_like_any_broken_stream(mitm: Relay) -> None:
    """The chunks before the bad one arrive; then iteration and final_completion() raise the same error."""
    relay, url = mitm
    relay.tamper.events = lambda events: events[:3] + events[4:]
    received = []
    with chunkwise.Client(base_url=f"{url}/v1", max_retries=0) as client:
        stream = client.confidential.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **GREEDY)
        with pytest.raises(chunkwise.BrokenChainError) as info:
            for chunk in stream:
                received.append(chunk)
        with pytest.raises(chunkwise.BrokenChainError) as again:
            stream.final_completion()
    assert len(received) == 3 and again.value is info.value
    assert info.value.request_id  # stamped like every stream error


@pytest.mark.anyio
async def test_the_async_client_catches_tampering_too(mitm: Relay, signer: Signer) -> None:
    relay, url = mitm
    relay.tamper.events = lambda events: swapped(events, 2, 3)
    async with chunkwise.AsyncClient(base_url=f"{url}/v1", max_retries=0, verify_key=signer.public_key) as client:
        stream = await client.confidential.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, **GREEDY
        )
        async with stream:
            with pytest.raises(chunkwise.BrokenChainError, match="expected chunk 2"):
                await stream.final_completion()
        relay.tamper.events = lambda events: events
        relay.tamper.lock = swap_lock_key
        with pytest.raises(chunkwise.SignatureError):
            await client.confidential.chat.completions.create(model=MODEL, messages=MESSAGES, **GREEDY)
