"""Reading a request body: bounded while it is read, decoded and validated by msgspec in one pass.

Every failure is an :class:`~chunkwise.APIStatusError` with its status, deep nesting included: msgspec
guards its C recursion with Python's limit, so a body of a few thousand ``[`` raises ``RecursionError``,
which must be a 400 like any other bad JSON.

A body whose top-level object names a key twice is a 400 too. Parsers disagree on which one counts
(msgspec and Python keep the last, others the first), so a gateway that routes by one ``model`` while its
upstream reads the other could be steered around its own checks.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request

from .._errors import BadRequestError, UnsupportedMediaTypeError
from ._errors import BodyTooLargeError, ClientClosedRequestError

__all__ = ["decode_json", "read_body", "read_json", "validation_param"]

T = TypeVar("T")

# msgspec ends a validation message with the path of the offending value: "... - at `$.messages[0].role`".
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")


def validation_param(error: msgspec.ValidationError) -> tuple[str | None, str]:
    """The OpenAI ``param`` (``messages[0].role``) named by a msgspec error, and the message without its path."""
    text = str(error)
    path = ""
    match = _PATH.search(text)
    if match is not None:
        path = match["path"]
        text = text[: match.start()]
    missing = _MISSING.match(text)
    if missing is not None:
        path = f"{path}.{missing['field']}"
    # Dictionary values have no name in the path ("$.logit_bias[...]"); name the dictionary.
    path = path.replace("[...]", "").lstrip(".")
    return (path or None), text


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; raises once it passes ``limit`` bytes, so an oversized body is never held whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(limit)
    parts: list[bytes] = []
    size = 0
    try:
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise BodyTooLargeError(limit)
            parts.append(part)
    except ClientDisconnect:
        raise ClientClosedRequestError() from None
    return b"".join(parts)


def _check_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        return  # curl -d without -H and many scripts send none; the body still has to be JSON
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"Expected a JSON body (Content-Type: application/json), got `{content_type}`.",
            code="unsupported_media_type",
        )


def decode_json(body: bytes, type: type[T]) -> T:
    """``body`` decoded (and validated) as ``type``; a 400 with ``param`` where msgspec names one."""
    try:
        decoded: T = msgspec.json.decode(body, type=type)
    except msgspec.ValidationError as exc:
        param, message = validation_param(exc)
        raise BadRequestError(f"Invalid request: {message}.", param=param) from None
    except msgspec.DecodeError as exc:
        raise BadRequestError(f"The body is not valid JSON: {exc}.", code="invalid_json") from None
    except RecursionError:
        raise BadRequestError("The body nests JSON values too deeply.", code="invalid_json") from None
    if body.lstrip()[:1] == b"{":
        twice = _repeated_top_level_key(body)
        if twice is not None:
            shown = twice if len(twice) <= 64 else twice[:64] + "..."
            raise BadRequestError(
                f"The body names the key `{shown}` more than once.", param=shown, code="duplicate_key"
            ) from None
    return decoded


def _pairs(pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return pairs


# One decoder for every body (``json.loads`` with a hook builds a new one per call); every object decodes
# to its list of pairs, which keeps each name as often as the body wrote it.
_PAIRS_DECODER = json.JSONDecoder(object_pairs_hook=_pairs)


def _repeated_top_level_key(body: bytes) -> str | None:
    """The first key that the top-level object of ``body`` (valid JSON) names twice, if any."""
    try:
        top: list[tuple[str, Any]] = _PAIRS_DECODER.decode(body.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return None  # msgspec accepted it; nothing more to say
    seen: set[str] = set()
    for name, _ in top:
        if name in seen:
            return name
        seen.add(name)
    return None


async def read_json(request: Request, type: type[T], *, limit: int) -> tuple[T, bytes]:
    """Decode the body of ``request`` as ``type``; also return the body as it came (to hash or measure)."""
    _check_content_type(request)
    body = await read_body(request, limit)
    return decode_json(body, type), body
