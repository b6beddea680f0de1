"""How uvicorn runs the gateway: uvloop and httptools, chosen here explicitly.

A proxy pays the HTTP layer twice per request (the client's side and the upstream's), and with uvicorn's
pure-Python defaults (h11, asyncio's loop) that layer is most of the gateway's time to first token.
``bench/bench_gateway.py`` measured the gateway's added TTFT and CPU per request with and without them
(BENCHMARKS.md). They are named here rather than left to uvicorn's ``"auto"``, which would pick them for
every server in the process's environment: ``chunkwise serve`` keeps h11 and asyncio's own loop.
"""

from __future__ import annotations

import importlib.util
from typing import TypedDict

__all__ = ["UvicornOptions", "uvicorn_options"]


class UvicornOptions(TypedDict):
    loop: str
    http: str


def uvicorn_options() -> UvicornOptions:
    """``uvicorn.Config`` keyword arguments for the gateway's event loop and HTTP protocol.

    Where uvloop or httptools is not installed (uvloop has no Windows build) the gateway falls back to
    asyncio's loop and h11: the same behaviour, only slower.
    """
    return UvicornOptions(
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
    )
