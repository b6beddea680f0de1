"""Key files: the node's X25519 key and the Ed25519 signing key, kept across restarts.

Each file holds one unencrypted PKCS#8 PEM private key, readable by its owner only (mode 0600). A missing
file is created with a new key; ``rotate`` replaces the key in the file. Writes go to a temporary file
that is renamed into place, so a crash never leaves half a key behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from ..confidential import NodeKey
from ..signing import Signer

__all__ = ["load_node_key", "load_signer"]

KeyT = TypeVar("KeyT", NodeKey, Signer)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _load(path: Path, kind: type[KeyT], *, rotate: bool) -> tuple[KeyT, bool]:
    """The key in ``path`` and whether it was made now; the file is created (or rewritten) when needed."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

    private_type = x25519.X25519PrivateKey if kind is NodeKey else ed25519.Ed25519PrivateKey
    if path.exists() and not rotate:
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path} does not hold an unencrypted PEM private key: {exc}") from None
        if not isinstance(loaded, private_type):
            raise ValueError(f"{path} holds a {type(loaded).__name__}, not a {private_type.__name__}")
        return kind(loaded.private_bytes_raw()), False
    key = kind()
    pem = private_type.from_private_bytes(key.private_bytes()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, pem)
    return key, True


def load_node_key(path: Path, *, rotate: bool = False) -> tuple[NodeKey, bool]:
    """The X25519 node key kept in ``path``, and whether it is new."""
    return _load(path, NodeKey, rotate=rotate)


def load_signer(path: Path, *, rotate: bool = False) -> tuple[Signer, bool]:
    """The Ed25519 signing key kept in ``path``, and whether it is new."""
    return _load(path, Signer, rotate=rotate)
