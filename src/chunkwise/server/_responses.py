"""Bodies the server answers with that no other package defines."""

from __future__ import annotations

import msgspec

__all__ = ["HealthStatus"]


class HealthStatus(msgspec.Struct, kw_only=True):
    """The body of ``GET /health``; ``message`` is what the Atoma proxy answers and its SDKs require."""

    message: str = "ok"
    status: str = "ok"
    #: The model the engine serves.
    model: str
