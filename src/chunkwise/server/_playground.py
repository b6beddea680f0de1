"""The web playground: one self-contained HTML page (inline CSS and JS, nothing fetched from elsewhere) at ``GET /``."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["playground", "playground_html"]

HTML_MEDIA_TYPE = "text/html; charset=utf-8"


@cache
def playground_html() -> bytes:
    """The page, read once from the package data."""
    return files(__package__).joinpath("playground.html").read_bytes()


async def playground(request: Request) -> Response:
    # The page is public (it holds no data); the API calls it makes carry the key the user types in.
    return Response(playground_html(), media_type=HTML_MEDIA_TYPE, headers={"Cache-Control": "no-cache"})
