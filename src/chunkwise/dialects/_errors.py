"""The one error a dialect raises for a request it cannot translate."""

from __future__ import annotations

from .._errors import BadRequestError

__all__ = ["DialectRequestError"]


class DialectRequestError(BadRequestError, ValueError):
    """A Responses or Messages request holds something the chat engine cannot be asked for.

    ``param`` names the offending field as a path into the dialect's request (``input[2].content[0]``,
    ``messages[0].content[1]``), so the edge can answer 400 in the dialect's own error shape: it is a
    :class:`~chunkwise._errors.BadRequestError` like every other 400.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message, param=param)

    def __repr__(self) -> str:
        return f"DialectRequestError({self.message!r}, param={self.param!r})"
