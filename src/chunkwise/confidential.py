"""Confidential chat, sans I/O: the Atoma envelopes and their cryptography (ATOMA_WIRE.md sections 2.8 and 4).

The client locks a node key (``POST /v1/nodes/lock``), agrees a key with it, and sends its request
encrypted in a :class:`ConfidentialComputeRequest`; the server answers with
:class:`ConfidentialComputeResponse` envelopes, one per streamed chunk or one for the whole response::

    key        = HKDF-SHA256(salt=<client's 16-byte salt>, ikm=X25519(secret, peer public key), info=b"", 32 bytes)
    ciphertext = AES-256-GCM(key, <12-byte nonce>, plaintext, no AAD)    # ciphertext || 16-byte tag
    hash       = Blake2b-256(plaintext)                                  # plaintext_body_hash / response_hash

The same key protects both directions. Unlike an Atoma node, which reuses one nonce for every chunk of a
stream (section 4.4), every envelope here gets a fresh random nonce: a nonce reused under one AES-GCM key
leaks the XOR of the plaintexts and lets anyone forge tags.

:func:`open_request` (server) and :class:`ClientSession` (client) hold all of it; both do no I/O. Every
primitive comes from ``cryptography`` (and ``hashlib`` for Blake2b).
"""

from __future__ import annotations

import hmac
import os
from typing import TYPE_CHECKING

import msgspec

from ._errors import DecryptionError, EnvelopeError
from .signing import KeyPair, b64decode, b64encode, blake2b256
from .types import CompletionUsage

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

__all__ = [
    "ClientSession",
    "ConfidentialComputeRequest",
    "ConfidentialComputeResponse",
    "KEY_SIZE",
    "NONCE_SIZE",
    "NodeKey",
    "NodesCreateLockRequest",
    "NodesCreateLockResponse",
    "OpenedRequest",
    "ResponseSealer",
    "SALT_SIZE",
    "derive_key",
    "open_request",
]

NONCE_SIZE = 12
SALT_SIZE = 16
KEY_SIZE = 32
_HASH_SIZE = 32


class NodesCreateLockRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The body of ``POST /v1/nodes/lock``."""

    model: str
    max_num_tokens: int | None = None
    #: Seconds the lock holds on the Atoma proxy (default 5).
    timeout: int | None = None


class NodesCreateLockResponse(msgspec.Struct, kw_only=True):
    """The answer of ``POST /v1/nodes/lock``: the node's X25519 public key in base64."""

    public_key: str
    node_small_id: int
    stack_small_id: int
    stack_entry_digest: str | None = None


class ConfidentialComputeRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The encrypted request envelope; every bytes field is standard base64 with padding."""

    ciphertext: str
    nonce: str
    salt: str
    client_dh_public_key: str
    node_dh_public_key: str
    plaintext_body_hash: str
    stack_small_id: int
    model_name: str
    #: Must agree with the plaintext's ``stream``: the Atoma proxy reads this one, the node the plaintext.
    stream: bool | None = None
    num_compute_units: int | None = None


class ConfidentialComputeResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One encrypted response or chunk. ``usage`` is plaintext, for billing, as Atoma sends it.

    ``signature`` and ``response_hash`` are always written (``null`` when unsigned): the Atoma Python SDK's
    async stream reads both keys unconditionally. Field order is the Atoma node's.
    """

    ciphertext: str
    nonce: str
    usage: CompletionUsage | None = None
    signature: str | None
    response_hash: str | None


def derive_key(shared_secret: bytes, salt: bytes) -> bytes:
    """HKDF-SHA256 with the client's salt and an empty ``info``, as the Atoma node and SDKs derive it."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=b"").derive(shared_secret)


class NodeKey(KeyPair, curve="X25519"):
    """The server's X25519 key pair; clients lock its public half and encrypt to it."""

    __slots__ = ()
    _key: X25519PrivateKey

    def agree(self, salt: bytes, peer_public_key: bytes) -> bytes:
        """The symmetric key shared with the holder of ``peer_public_key`` for this ``salt``."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

        shared = self._key.exchange(X25519PublicKey.from_public_bytes(peer_public_key))
        return derive_key(shared, salt)


class _Cipher:
    """AES-256-GCM under one agreed key, with a fresh random nonce for every message."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes) -> tuple[str, str]:
        """``(base64 nonce, base64 ciphertext)``."""
        nonce = os.urandom(NONCE_SIZE)
        return b64encode(nonce), b64encode(self._aead.encrypt(nonce, plaintext, None))

    def open(self, nonce: bytes, ciphertext: bytes) -> bytes | None:
        """The plaintext, or ``None`` when the tag does not verify (nothing else about why)."""
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(nonce, ciphertext, None)
        except InvalidTag:
            return None


_response_encoder = msgspec.json.Encoder()


class ResponseSealer:
    """The server's half of one exchange: encrypts each response body (or chunk) for the client."""

    __slots__ = ("_cipher",)

    def __init__(self, key: bytes) -> None:
        self._cipher = _Cipher(key)

    def seal(
        self, plaintext: bytes, *, response_hash: str, signature: str | None, usage: CompletionUsage | None
    ) -> bytes:
        """The JSON of a :class:`ConfidentialComputeResponse` carrying ``plaintext``."""
        nonce, ciphertext = self._cipher.seal(plaintext)
        envelope = ConfidentialComputeResponse(
            ciphertext=ciphertext, nonce=nonce, usage=usage, signature=signature, response_hash=response_hash
        )
        return _response_encoder.encode(envelope)


class OpenedRequest(msgspec.Struct, frozen=True):
    """A request envelope the server opened: the plaintext, its hash, and how to seal the answer."""

    plaintext: bytes
    plaintext_hash: bytes
    sealer: ResponseSealer
    envelope: ConfidentialComputeRequest


def _field(envelope: ConfidentialComputeRequest, name: str, size: int) -> bytes:
    try:
        return b64decode(getattr(envelope, name), size=size)
    except ValueError as exc:
        raise EnvelopeError(f"`{name}` {exc}.", param=name, code="invalid_envelope") from None


def open_request(envelope: ConfidentialComputeRequest, node_key: NodeKey) -> OpenedRequest:
    """Decrypt and check a request envelope addressed to ``node_key``; raises :class:`~chunkwise.EnvelopeError`.

    Failures say which check failed, never anything about the plaintext: a tag that does not verify says
    only that, so error answers cannot serve as a decryption oracle.
    """
    nonce = _field(envelope, "nonce", NONCE_SIZE)
    salt = _field(envelope, "salt", SALT_SIZE)
    client_key = _field(envelope, "client_dh_public_key", KEY_SIZE)
    node_public = _field(envelope, "node_dh_public_key", KEY_SIZE)
    claimed_hash = _field(envelope, "plaintext_body_hash", _HASH_SIZE)
    try:
        ciphertext = b64decode(envelope.ciphertext)
    except ValueError as exc:
        raise EnvelopeError(f"`ciphertext` is {exc}.", param="ciphertext", code="invalid_envelope") from None
    if not hmac.compare_digest(node_public, node_key.public_key):
        raise EnvelopeError(
            "`node_dh_public_key` is not this server's key (it may have been rotated): "
            "lock again with POST /v1/nodes/lock and encrypt to the key it returns.",
            param="node_dh_public_key",
            code="unknown_node_key",
        )
    try:
        key = node_key.agree(salt, client_key)
    except ValueError:  # a low-order point: the exchange would give the all-zero secret
        raise EnvelopeError(
            "`client_dh_public_key` is not a usable X25519 public key.",
            param="client_dh_public_key",
            code="invalid_envelope",
        ) from None
    cipher = _Cipher(key)
    plaintext = cipher.open(nonce, ciphertext)
    if plaintext is None:
        raise EnvelopeError(
            "The ciphertext does not decrypt with the key agreed from `client_dh_public_key`, "
            "`node_dh_public_key` and `salt` under `nonce`.",
            param="ciphertext",
            code="decryption_failed",
        )
    digest = blake2b256(plaintext)
    if not hmac.compare_digest(digest, claimed_hash):
        raise EnvelopeError(
            "`plaintext_body_hash` is not the Blake2b-256 hash of the decrypted request.",
            param="plaintext_body_hash",
            code="hash_mismatch",
        )
    return OpenedRequest(plaintext=plaintext, plaintext_hash=digest, sealer=ResponseSealer(key), envelope=envelope)


class _ReceivedResponse(msgspec.Struct, kw_only=True):
    # What a client accepts: an Atoma node may leave out the optional keys that chunkwise always writes.
    ciphertext: str
    nonce: str
    usage: CompletionUsage | None = None
    signature: str | None = None
    response_hash: str | None = None


_response_decoder = msgspec.json.Decoder(_ReceivedResponse)


class ClientSession:
    """The client's half of one confidential exchange: a fresh X25519 key pair and salt per request.

    >>> session = ClientSession(lock)                       # the NodesCreateLockResponse
    >>> body = session.seal_request(request_json, model=..., stream=True)
    >>> plaintext, envelope = session.open_response(event_data)   # per chunk, or for the whole body
    """

    __slots__ = ("_cipher", "client_public_key", "lock", "node_public_key", "request_hash", "salt")

    def __init__(self, lock: NodesCreateLockResponse) -> None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

        try:
            node_public = b64decode(lock.public_key, size=KEY_SIZE)
        except ValueError as exc:
            raise DecryptionError(f"the node's public key from /v1/nodes/lock {exc}") from None
        self.lock = lock
        self.node_public_key = node_public
        secret = X25519PrivateKey.generate()
        self.client_public_key = secret.public_key().public_bytes_raw()
        self.salt = os.urandom(SALT_SIZE)
        try:
            shared = secret.exchange(X25519PublicKey.from_public_bytes(node_public))
        except ValueError:
            raise DecryptionError("the node's public key from /v1/nodes/lock is not a usable X25519 key") from None
        self._cipher = _Cipher(derive_key(shared, self.salt))
        #: Blake2b-256 of the plaintext request, once sealed: the root of a chunkwise response's chain.
        self.request_hash = b""

    def seal_request(
        self, plaintext: bytes, *, model: str, stream: bool, num_compute_units: int | None = None
    ) -> bytes:
        """The JSON of the :class:`ConfidentialComputeRequest` carrying ``plaintext``."""
        nonce, ciphertext = self._cipher.seal(plaintext)
        self.request_hash = blake2b256(plaintext)
        envelope = ConfidentialComputeRequest(
            ciphertext=ciphertext,
            nonce=nonce,
            salt=b64encode(self.salt),
            client_dh_public_key=b64encode(self.client_public_key),
            node_dh_public_key=b64encode(self.node_public_key),
            plaintext_body_hash=b64encode(self.request_hash),
            stack_small_id=self.lock.stack_small_id,
            model_name=model,
            stream=stream,
            num_compute_units=num_compute_units,
        )
        return msgspec.json.encode(envelope)

    def open_response(self, data: bytes) -> tuple[bytes, ConfidentialComputeResponse]:
        """Decrypt one response envelope; raises :class:`~chunkwise.DecryptionError`.

        The ``response_hash``, when present, must be the plaintext's hash (a signature over it is checked
        by :class:`~chunkwise.signing.ChainVerifier`).
        """
        try:
            envelope = _response_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise DecryptionError(f"not a confidential response envelope: {exc}") from None
        try:
            nonce = b64decode(envelope.nonce, size=NONCE_SIZE)
            ciphertext = b64decode(envelope.ciphertext)
        except ValueError as exc:
            raise DecryptionError(f"a malformed confidential response: a field {exc}") from None
        plaintext = self._cipher.open(nonce, ciphertext)
        if plaintext is None:
            raise DecryptionError(
                "a confidential response does not decrypt: it was altered in transit, or comes from another key"
            )
        received = ConfidentialComputeResponse(
            ciphertext=envelope.ciphertext,
            nonce=envelope.nonce,
            usage=envelope.usage,
            signature=envelope.signature,
            response_hash=envelope.response_hash,
        )
        return plaintext, received
