"""Verifiable responses, sans I/O: Atoma-style signatures plus a hash chain that binds chunks together.

An Atoma node signs every chunk (and every non-stream response) on its own (ATOMA_WIRE.md section 5.6):
``response_hash`` is the base64 Blake2b-256 of the JSON without the two keys, ``signature`` an Ed25519
signature over those 32 hash bytes in Sui's ``flag || signature || public key`` base64 form, and both keys
are appended last. Chunks signed one by one can still be dropped, reordered or replayed unnoticed, so a
chunkwise server also puts a link into every signed JSON body before hashing it::

    "chunkwise_chain": {"seq": 3, "prev": "<base64 response_hash of chunk 2>"}

The first link's ``prev`` is the Blake2b-256 of the request body, which ties the response to its request.
:class:`ChainSealer` writes links and signatures (the server), :class:`ChainVerifier` checks them (the
client). Both work on bytes and do no I/O. The primitives come from ``cryptography`` and ``hashlib``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import importlib
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import msgspec

from ._errors import BrokenChainError, SignatureError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "CHAIN_FIELD",
    "ChainLink",
    "ChainSealer",
    "ChainVerifier",
    "KeyPair",
    "Signer",
    "b64decode",
    "b64encode",
    "blake2b256",
    "decode_public_key",
    "split_signed_json",
    "sui_address",
    "sui_signature_key",
    "verify_sui_signature",
]

#: The key of the chain link inside a signed JSON body; other clients ignore it as an unknown field.
CHAIN_FIELD = "chunkwise_chain"

#: Sui's signature scheme flag for Ed25519.
_ED25519_FLAG = 0x00
_SIGNATURE_SIZE = 64
_PUBLIC_KEY_SIZE = 32
_SUI_SIGNATURE_SIZE = 1 + _SIGNATURE_SIZE + _PUBLIC_KEY_SIZE
#: What a chunkwise or Atoma server appends to a signed body; a JSON string cannot contain it unescaped.
_SIGNATURE_SUFFIX_START = b',"signature":'


class _RawPublicKey(Protocol):
    def public_bytes_raw(self) -> bytes: ...


class _RawPrivateKey(Protocol):
    """What ``cryptography``'s Ed25519 and X25519 private keys have in common."""

    def public_key(self) -> _RawPublicKey: ...

    def private_bytes_raw(self) -> bytes: ...


class _RawPrivateKeyType(Protocol):
    """The class of such a key: ``Ed25519PrivateKey`` or ``X25519PrivateKey``."""

    def generate(self) -> _RawPrivateKey: ...

    def from_private_bytes(self, data: bytes) -> _RawPrivateKey: ...


def blake2b256(data: bytes) -> bytes:
    """Blake2b with a 32-byte digest, the hash of every Atoma signature and confidential check."""
    return hashlib.blake2b(data, digest_size=32).digest()


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, *, size: int | None = None) -> bytes:
    """Strict standard base64; raises ``ValueError`` for bad characters, padding or a wrong decoded size."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64 ({exc})") from None
    if size is not None and len(data) != size:
        raise ValueError(f"decodes to {len(data)} bytes, expected {size}")
    return data


def decode_public_key(key: str | bytes) -> bytes:
    """A pinned Ed25519 public key: 32 raw bytes, or their base64 as printed by ``chunkwise serve``."""
    if isinstance(key, bytes) and len(key) == _PUBLIC_KEY_SIZE:
        return key
    text = key.decode("ascii") if isinstance(key, bytes) else key
    try:
        return b64decode(text.strip(), size=_PUBLIC_KEY_SIZE)
    except ValueError as exc:
        raise ValueError(f"an Ed25519 public key is 32 bytes or their base64; this one is {exc}") from None


class KeyPair:
    """A private key whose halves are 32 raw bytes: the shape of :class:`Signer` and of the confidential
    ``NodeKey``, which differ only in the curve and in what the private half does.

    A subclass names its curve once, ``class Signer(KeyPair, curve="Ed25519")``: the private key class is
    ``cryptography``'s ``<curve>PrivateKey``, imported when a key is made (``cryptography`` is an extra).
    """

    __slots__ = ("_key", "public_key")
    _curve: ClassVar[str]

    def __init_subclass__(cls, *, curve: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if curve is not None:  # a subclass of a subclass keeps its curve
            cls._curve = curve

    def __init__(self, private_key: bytes | None = None) -> None:
        """A new random key, or the one whose 32 raw private bytes are ``private_key``."""
        module = importlib.import_module(f"cryptography.hazmat.primitives.asymmetric.{self._curve.lower()}")
        key_type: _RawPrivateKeyType = getattr(module, f"{self._curve}PrivateKey")
        key = key_type.generate() if private_key is None else key_type.from_private_bytes(private_key)
        self._key = key
        #: The 32 raw bytes of the public key.
        self.public_key: bytes = key.public_key().public_bytes_raw()

    @property
    def public_key_base64(self) -> str:
        return b64encode(self.public_key)

    def private_bytes(self) -> bytes:
        return self._key.private_bytes_raw()


class Signer(KeyPair, curve="Ed25519"):
    """An Ed25519 signing key that signs hashes the way an Atoma node does."""

    __slots__ = ()
    _key: Ed25519PrivateKey

    def sign_hash(self, digest: bytes) -> str:
        """Sui's base64 ``flag || signature || public key`` over the hash bytes."""
        signature = self._key.sign(digest)
        return b64encode(bytes([_ED25519_FLAG]) + signature + self.public_key)


def sui_address(public_key: bytes) -> str:
    """The Sui address of an Ed25519 public key: ``0x`` and the hex Blake2b-256 of ``flag || key``."""
    return "0x" + blake2b256(bytes([_ED25519_FLAG]) + public_key).hex()


def sui_signature_key(signature: str) -> bytes:
    """The public key embedded in a Sui Ed25519 signature (not yet verified); raises ``ValueError``."""
    raw = b64decode(signature, size=_SUI_SIGNATURE_SIZE)
    if raw[0] != _ED25519_FLAG:
        raise ValueError(f"uses scheme flag {raw[0]}, not Ed25519 (0)")
    return raw[1 + _SIGNATURE_SIZE :]


@functools.lru_cache(maxsize=64)
def _ed25519_public_key(raw: bytes) -> Any:
    # Loading a key costs a tenth of a verification; a stream checks every chunk against the same one.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


def verify_sui_signature(signature: str, digest: bytes, public_key: bytes | None) -> None:
    """Check a Sui Ed25519 signature over ``digest``; with ``public_key``, it must be that key's.

    Raises :class:`~chunkwise.SignatureError`. Atoma's proxy skips the key comparison; pinning makes it.
    """
    from cryptography.exceptions import InvalidSignature

    try:
        raw = b64decode(signature, size=_SUI_SIGNATURE_SIZE)
    except ValueError as exc:
        raise SignatureError(f"the signature is not a Sui Ed25519 signature: it {exc}") from None
    if raw[0] != _ED25519_FLAG:
        raise SignatureError(f"the signature uses scheme flag {raw[0]}, not Ed25519 (0)")
    embedded = raw[1 + _SIGNATURE_SIZE :]
    if public_key is not None and not hmac.compare_digest(embedded, public_key):
        raise SignatureError(
            f"the response is signed by {b64encode(embedded)}, not by the pinned key {b64encode(public_key)}"
        )
    try:
        _ed25519_public_key(embedded).verify(raw[1 : 1 + _SIGNATURE_SIZE], digest)
    except (InvalidSignature, ValueError):
        raise SignatureError("the signature does not verify over the response hash") from None


class _Signed(msgspec.Struct):
    signature: str | None = None
    response_hash: str | None = None


_signed_decoder = msgspec.json.Decoder(_Signed)


def split_signed_json(data: bytes) -> tuple[bytes, str | None, str | None]:
    """``(body, signature, response_hash)`` of a JSON object whose last keys are ``signature``, ``response_hash``.

    ``body`` is the JSON as it was before the two keys were appended: the exact bytes that were hashed
    (re-serializing could change float formatting or key order). Without the keys, ``data`` comes back whole.
    """
    start = data.rfind(_SIGNATURE_SUFFIX_START)
    if start < 0 or not data.rstrip().endswith(b"}"):
        return data, None, None
    try:
        signed = _signed_decoder.decode(b"{" + data[start + 1 :])
    except msgspec.DecodeError:
        return data, None, None
    return data[:start] + b"}", signed.signature, signed.response_hash


class ChainLink(msgspec.Struct, omit_defaults=False):
    """The link a chunkwise server adds to each signed body under :data:`CHAIN_FIELD`."""

    seq: int
    prev: str


class _Chained(msgspec.Struct):
    chunkwise_chain: ChainLink | None = None


_chained_decoder = msgspec.json.Decoder(_Chained)


class ChainSealer:
    """The server half: links each body to the one before and signs it (when there is a signer)."""

    __slots__ = ("_prev", "_seq", "_signer")

    def __init__(self, root: bytes, signer: Signer | None) -> None:
        self._prev = b64encode(root)
        self._seq = 0
        self._signer = signer

    def link(self, body: bytes) -> tuple[bytes, str, str | None]:
        """``(linked body, base64 response_hash, signature or None)`` for the next JSON object ``body``."""
        linked = b'%b,"%b":{"seq":%d,"prev":"%b"}}' % (body[:-1], CHAIN_FIELD.encode(), self._seq, self._prev.encode())
        digest = blake2b256(linked)
        response_hash = b64encode(digest)
        self._seq += 1
        self._prev = response_hash
        signature = self._signer.sign_hash(digest) if self._signer is not None else None
        return linked, response_hash, signature

    def seal(self, body: bytes) -> bytes:
        """``body`` linked, then with ``signature`` and ``response_hash`` appended last, as an Atoma node does."""
        linked, response_hash, signature = self.link(body)
        assert signature is not None, "sealing in the clear needs a signer"
        return b'%b,"signature":"%b","response_hash":"%b"}' % (linked[:-1], signature.encode(), response_hash.encode())


class ChainVerifier:
    """The client half, for one response: checks hashes, signatures against a pinned key, and the chain.

    ``root`` is the Blake2b-256 of the request body as sent. With ``public_key`` every body must be signed
    by that key. The chain is required once the first body carries a link, or always with
    ``require_chain``; a server without links (the Atoma cloud) is checked chunk by chunk only.
    """

    __slots__ = ("_chained", "_prev", "_public_key", "_require_chain", "_seq")

    def __init__(self, root: bytes, public_key: bytes | None, *, require_chain: bool = False) -> None:
        self._prev = b64encode(root)
        self._seq = 0
        self._public_key = public_key
        self._require_chain = require_chain
        self._chained: bool | None = None

    @property
    def count(self) -> int:
        """How many bodies were checked."""
        return self._seq

    def check_signed_json(self, data: bytes) -> None:
        """Check a JSON body that carries its own ``signature`` and ``response_hash`` (plain, signed responses)."""
        body, signature, response_hash = split_signed_json(data)
        if response_hash is None or (signature is None and self._public_key is not None):
            raise SignatureError(f"body {self._seq} is not signed, but responses must be signed by the pinned key")
        self.check(body, response_hash, signature)

    def check(self, body: bytes, response_hash: str | None, signature: str | None) -> None:
        """Check one body (a chunk, or a whole response) given its hash and signature."""
        seq = self._seq
        digest = blake2b256(body)
        if response_hash is not None:
            try:
                claimed = b64decode(response_hash, size=32)
            except ValueError as exc:
                raise SignatureError(f"the response_hash of body {seq} {exc}") from None
            if not hmac.compare_digest(claimed, digest):
                raise SignatureError(f"the response_hash of body {seq} does not match its content")
        if self._public_key is not None:
            if signature is None or response_hash is None:
                raise SignatureError(f"body {seq} is not signed, but responses must be signed by the pinned key")
            verify_sui_signature(signature, digest, self._public_key)
        self._follow(body, digest, seq)
        self._seq = seq + 1

    def _follow(self, body: bytes, digest: bytes, seq: int) -> None:
        link = _chained_decoder.decode(body).chunkwise_chain if CHAIN_FIELD.encode() in body else None
        if self._chained is None:
            self._chained = link is not None or self._require_chain
        if not self._chained:
            return
        if link is None:
            raise BrokenChainError(f"body {seq} carries no chain link, though the response is chained")
        if link.seq != seq:
            raise BrokenChainError(
                f"expected chunk {seq} of the response, got chunk {link.seq}: "
                "chunks were dropped, reordered or replayed"
            )
        if link.prev != self._prev:
            what = "the request" if seq == 0 else f"chunk {seq - 1}"
            raise BrokenChainError(
                f"chunk {seq} does not follow {what}: it belongs to another response, or was reordered or replayed"
            )
        self._prev = b64encode(digest)
