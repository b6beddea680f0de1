"""Node registration, sans I/O: the signed body a node sends to ``POST /v1/nodes``, and its checks.

The body has Atoma's ``NodesCreateRequest`` shape (ATOMA_WIRE.md section 2.7)::

    {"data": {"node_small_id": 7, "public_address": "0x…", "country": "NL", …}, "signature": "<Sui base64>"}

``signature`` is the Sui form (``flag || signature || public key``, base64) of an Ed25519 signature over the
Blake2b-256 of the ``data`` JSON bytes, and ``public_address`` is the signer's Sui address. A chunkwise
node adds ``name``, ``url`` (where the gateway reaches it) and ``timestamp`` (Unix milliseconds), all
three together: the gateway accepts a timestamp only within its clock-skew window and only newer than the
last one it accepted from that key, so a captured registration cannot be replayed. Atoma's own shape,
without them, is verified just the same but carries no address to route to.

:func:`signed_registration` builds a body (the node), :func:`verify_registration` checks one (the gateway).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import msgspec

from ._errors import APIStatusError, SignatureError
from .signing import Signer, b64encode, blake2b256, sui_address, sui_signature_key, verify_sui_signature

__all__ = [
    "NodeRegistration",
    "RegistrationError",
    "VerifiedRegistration",
    "default_node_small_id",
    "signed_registration",
    "verify_registration",
]


class RegistrationError(APIStatusError):
    """A registration that is not accepted; ``status`` is 400 for a malformed body, 401 for a refused signer."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message, status=status, type="invalid_request_error", code=code)


class NodeRegistration(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The signed ``data`` of a registration; ``name``, ``url`` and ``timestamp`` are chunkwise's."""

    node_small_id: int
    public_address: str
    country: str
    name: str | None = None
    #: The node's base URL as the gateway reaches it (``http://host:port``, without ``/v1``).
    url: str | None = None
    #: Unix time in milliseconds, strictly increasing from one registration of a key to the next.
    timestamp: int | None = None

    @property
    def joins(self) -> bool:
        """Whether it carries an address to route to (chunkwise's shape), not just Atoma's fields."""
        return self.url is not None


class _Envelope(msgspec.Struct):
    data: msgspec.Raw
    signature: str


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_registration_decoder = msgspec.json.Decoder(NodeRegistration)
_encoder = msgspec.json.Encoder()


def default_node_small_id(public_key: bytes) -> int:
    """A node id fixed by its signing key (48 bits, so JavaScript clients read it exactly)."""
    return int.from_bytes(blake2b256(public_key)[:6], "big")


def signed_registration(signer: Signer, registration: NodeRegistration) -> bytes:
    """The body of ``POST /v1/nodes`` for ``registration``, signed by ``signer``."""
    data = _encoder.encode(registration)
    signature = signer.sign_hash(blake2b256(data))
    return b'{"data":%b,"signature":%b}' % (data, _encoder.encode(signature))


class VerifiedRegistration(msgspec.Struct, frozen=True):
    registration: NodeRegistration
    #: The signer's 32-byte Ed25519 public key.
    public_key: bytes


def _malformed(message: str, code: str = "invalid_registration") -> RegistrationError:
    return RegistrationError(message, status=400, code=code)


def _refused(message: str, code: str) -> RegistrationError:
    return RegistrationError(message, status=401, code=code)


def verify_registration(
    body: bytes,
    *,
    trusted: frozenset[bytes],
    now_ms: int,
    max_skew_ms: int,
    last_timestamp: dict[bytes, int],
) -> VerifiedRegistration:
    """Check a registration body; raises :class:`RegistrationError`.

    ``last_timestamp`` maps each key to the newest timestamp accepted from it; a chunkwise registration
    that passes updates it, so the same body is refused the second time.
    """
    try:
        envelope = _envelope_decoder.decode(body)
        registration = _registration_decoder.decode(envelope.data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _malformed(f"Invalid node registration: {exc}.") from None
    try:
        public_key = sui_signature_key(envelope.signature)
    except ValueError as exc:
        raise _malformed(f"`signature` is not a Sui Ed25519 signature ({exc}).", "invalid_signature") from None
    if public_key not in trusted:
        raise _refused(
            f"The node key {b64encode(public_key)} is not trusted by this gateway "
            "(add it with `chunkwise nodes allow --config gateway.toml KEY`).",
            "untrusted_node_key",
        )
    # The bytes as sent; else what Atoma's proxy hashes, serde_json's compact form of its struct (fields in
    # the order node_small_id, public_address, country), which the bytes sent need not match: the Atoma
    # SDKs send the fields in alphabetical order, other clients spaced out.
    signed_forms = dict.fromkeys([bytes(envelope.data), _encoder.encode(registration)])
    for form in signed_forms:
        try:
            verify_sui_signature(envelope.signature, blake2b256(form), public_key)
            break
        except SignatureError:
            continue
    else:
        raise _refused("The registration's signature does not verify over its `data`.", "invalid_signature")
    if registration.public_address.lower() != sui_address(public_key):
        raise _refused(
            f"`public_address` {registration.public_address!r} is not the signer's Sui address.", "address_mismatch"
        )
    if registration.joins or registration.name is not None or registration.timestamp is not None:
        _check_joining(registration, public_key, now_ms, max_skew_ms, last_timestamp)
    return VerifiedRegistration(registration, public_key)


def _check_joining(
    registration: NodeRegistration, public_key: bytes, now_ms: int, max_skew_ms: int, last: dict[bytes, int]
) -> None:
    name, url, timestamp = registration.name, registration.url, registration.timestamp
    if name is None or url is None or timestamp is None:
        raise _malformed("A joining node's registration needs `name`, `url` and `timestamp` together.")
    if not name or len(name) > 64 or not name.isprintable():
        raise _malformed("`name` must be 1 to 64 printable characters.")
    try:
        parts = urlsplit(url)
        # ASCII without spaces: the URL goes into HTTP request lines and Host headers as it is.
        plain = url.isascii() and url.isprintable() and " " not in url and len(url) <= 2048
        valid = plain and parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        valid = False
    if not valid:
        raise _malformed("`url` must be an http:// or https:// URL with a host.")
    if abs(now_ms - timestamp) > max_skew_ms:
        raise _refused(
            f"The registration's timestamp is {abs(now_ms - timestamp) / 1000:.1f} s away from the gateway's clock "
            f"(at most {max_skew_ms / 1000:g} s allowed): a stale or replayed registration, or a wrong clock.",
            "stale_registration",
        )
    previous = last.get(public_key)
    if previous is not None and timestamp <= previous:
        raise _refused(
            "The registration's timestamp is not newer than the last one accepted from this key: a replay.",
            "replayed_registration",
        )
    last[public_key] = timestamp
