"""The edge reads an API key from ``Authorization: Bearer`` or, failing that, ``x-api-key``, and says which."""

from __future__ import annotations

import pytest

from chunkwise.edge import BEARER, X_API_KEY, find_credential


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"Bearer sk-1")], (b"sk-1", BEARER)),
        ([(b"authorization", b"bearer  sk-1 ")], (b"sk-1", BEARER)),
        ([(b"x-api-key", b"sk-2")], (b"sk-2", X_API_KEY)),
        # Both sent: the bearer key wins, whichever header came first.
        ([(b"x-api-key", b"sk-2"), (b"authorization", b"Bearer sk-1")], (b"sk-1", BEARER)),
        ([(b"authorization", b"Bearer sk-1"), (b"x-api-key", b"sk-2")], (b"sk-1", BEARER)),
        # Another scheme is no bearer key; x-api-key still counts.
        ([(b"authorization", b"Basic dXNlcg=="), (b"x-api-key", b"sk-2")], (b"sk-2", X_API_KEY)),
        ([(b"authorization", b"Basic dXNlcg==")], None),
        ([(b"authorization", b"Bearer ")], None),
        ([(b"authorization", b"Bearer")], None),
        ([(b"x-api-key", b"  ")], None),
        ([], None),
    ],
)
def test_find_credential(headers: list[tuple[bytes, bytes]], expected: tuple[bytes, str] | None) -> None:
    credential = find_credential(headers)
    if expected is None:
        assert credential is None
    else:
        assert credential is not None
        assert (credential.secret, credential.scheme) == expected
