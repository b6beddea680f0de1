"""``GET`` and ``DELETE /v1/responses/{response_id}``: the stored Responses, read and deleted by who stored them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._json import JSONResponse
from ._response_store import ResponseStore, stored_response

__all__ = ["ResponseDeleted", "stored_response_routes"]


class ResponseDeleted(msgspec.Struct, kw_only=True):
    """The body of ``DELETE /v1/responses/{id}``."""

    id: str
    object: str = "response"
    deleted: bool = True


def stored_response_routes(store: ResponseStore, owner: Callable[[Request], Awaitable[str | None]]) -> list[Route]:
    """The two routes over ``store``; ``owner(request)`` names the caller (or refuses it), who reaches only the
    responses it stored: another's answer 404, as a missing one does."""

    async def retrieve(request: Request) -> Response:
        stored = stored_response(store, request.path_params["response_id"], await owner(request))
        return JSONResponse(stored.response)

    async def delete(request: Request) -> Response:
        response_id = stored_response(store, request.path_params["response_id"], await owner(request)).response.id
        store.delete(response_id)
        return JSONResponse(ResponseDeleted(id=response_id))

    path = "/v1/responses/{response_id}"
    return [Route(path, retrieve, methods=["GET"]), Route(path, delete, methods=["DELETE"])]
