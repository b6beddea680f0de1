"""One API call, sans I/O: its request, its deadlines and retries, and how its answer is read.

Both clients drive a :class:`Call` through the same steps; only their loops do I/O.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypedDict, Unpack

import httpx
import msgspec

from .._errors import APIError, ChunkwiseError, RequestValidationError
from ..accumulate import accumulate
from ..types import ChatCompletion, ChatCompletionRequest, Message, ModelList, completion_decoder
from ._config import USE_CLIENT_DEFAULT, ClientConfig, UseClientDefault
from ._errors import APIConnectionError, UnexpectedResponseError
from ._guards import ResponseGuard
from ._responses import decode_body, decode_success, is_event_stream, parse_error_body, request_id_of, status_error
from ._retries import RetryState
from ._streaming import EventCore, StreamCore
from ._timeouts import Deadlines, Timeouts

__all__ = [
    "Call",
    "CallRequest",
    "RequestOptions",
    "chat_request_body",
    "read_chat_completion",
    "read_model_list",
    "read_whole_stream",
    "request_body",
    "whole_body_deadlines",
]

logger = logging.getLogger("chunkwise.client")

#: The body is already read: what is left is parsing, which no deadline bounds.
_NO_TIMEOUTS = Timeouts(connect=None, first_chunk=None, idle=None, total=None)
_model_list_decoder = msgspec.json.Decoder(ModelList)
_raw_json_decoder = msgspec.json.Decoder(msgspec.Raw)


def chat_request_body(
    *,
    model: str,
    messages: Iterable[Message | Mapping[str, Any]],
    stream: bool,
    params: Mapping[str, Any],
    extra_body: Mapping[str, Any] | None,
) -> bytes:
    """The JSON of a :class:`~chunkwise.types.ChatCompletionRequest` built from keyword arguments."""
    return request_body(
        ChatCompletionRequest,
        "chat completion",
        {"model": model, "messages": list(messages)},
        stream=stream,
        params=params,
        extra_body=extra_body,
    )


def request_body(
    request_type: type[msgspec.Struct],
    what: str,
    fields: Mapping[str, Any],
    *,
    stream: bool,
    params: Mapping[str, Any],
    extra_body: Mapping[str, Any] | None,
) -> bytes:
    """The JSON of a ``request_type`` (a chat, Responses or Messages request) from ``create``'s arguments.

    ``fields`` are the ones ``create`` names, ``params`` the rest of its keyword arguments: each must be a field of
    the request type (anything else goes in ``extra_body``), so that a typo is an error here, not a 400 there.
    """
    known = frozenset(request_type.__struct_fields__) - fields.keys() - {"stream"}
    unknown = params.keys() - known
    if unknown:
        names = ", ".join(sorted(unknown))
        raise TypeError(
            f"create() got unexpected keyword arguments: {names} (send fields the request type does not "
            f"know with extra_body=); known fields: {', '.join(sorted(known))}"
        )
    values = {**fields, **params}
    if stream:
        values["stream"] = True
    try:
        request = msgspec.convert(values, request_type)
        if not extra_body:
            return msgspec.json.encode(request)
        return msgspec.json.encode({**msgspec.to_builtins(request), **extra_body})
    except msgspec.ValidationError as exc:
        raise RequestValidationError(f"invalid {what} request: {exc}") from None
    except UnicodeEncodeError as exc:  # a lone surrogate, which UTF-8 cannot carry
        text = exc.object[max(0, exc.start - 20) : exc.end + 20]
        raise RequestValidationError(f"the request holds text that is not valid Unicode: {text!r}") from None


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """What a caller may set for one request (``create(timeout=..., max_retries=..., extra_headers=...)``),
    else the client's settings apply."""

    timeout: Timeouts | float | None | UseClientDefault = USE_CLIENT_DEFAULT
    max_retries: int | UseClientDefault = USE_CLIENT_DEFAULT
    #: Added to (and overriding) the client's headers.
    extra_headers: Mapping[str, str] | None = None


class CallRequest(TypedDict, total=False):
    """What a :class:`Call` sends beside its method and path, each as the call needs."""

    body: bytes | None
    #: A call to make first, and how its answer becomes this call's body (the confidential lock).
    body_from: tuple[Call, Callable[[httpx.Response], bytes]] | None
    #: Whether the answer is an event stream (``Accept: text/event-stream``).
    streaming: bool
    #: Makes the guard that checks each response (signed or confidential answers).
    new_guard: Callable[[], ResponseGuard] | None
    #: Headers instead of the client's own (a dialect's), under the request's ``extra_headers``.
    base_headers: httpx.Headers | None


class Call:
    """Everything about one API call that is not I/O."""

    __slots__ = ("_new_guard", "body", "body_from", "deadlines", "headers", "method", "path", "retry", "streaming")

    def __init__(
        self,
        config: ClientConfig,
        rng: random.Random,
        options: RequestOptions,
        method: str,
        path: str,
        **request: Unpack[CallRequest],
    ) -> None:
        self.method = method
        self.path = path
        self.body = body = request.get("body")
        self.body_from = body_from = request.get("body_from")
        self.streaming = streaming = request.get("streaming", False)
        timeout, max_retries = options.timeout, options.max_retries
        timeouts = config.timeouts if timeout is USE_CLIENT_DEFAULT else Timeouts.coerce(timeout)
        self.deadlines = Deadlines(timeouts, streaming=streaming)
        retries = config.max_retries if max_retries is USE_CLIENT_DEFAULT else max_retries
        self.retry = RetryState(retries, config.backoff, self.deadlines, rng)
        base_headers = request.get("base_headers")
        headers = httpx.Headers(config.headers if base_headers is None else base_headers)
        headers["accept"] = "text/event-stream" if streaming else "application/json"
        if body is not None or body_from is not None:
            headers["content-type"] = "application/json"
        if options.extra_headers:
            headers.update(options.extra_headers)
        self.headers = headers
        self._new_guard = request.get("new_guard")

    def build_request(self, http: httpx.Client | httpx.AsyncClient, config: ClientConfig) -> httpx.Request:
        """The request for the next attempt (it carries that attempt's timeouts)."""
        request = http.build_request(
            self.method,
            config.base_url.join(self.path),
            params=config.query,
            headers=self.headers,
            content=self.body,
        )
        request.extensions["timeout"] = self.deadlines.transport_timeouts()
        logger.debug("%s %s", self.method, request.url)
        return request

    def guard(self) -> ResponseGuard | None:
        """A fresh guard for the next response, when its answers are checked (signed or confidential)."""
        return None if self._new_guard is None else self._new_guard()

    def read_completion(self, response: httpx.Response) -> ChatCompletion:
        """The chat completion in ``response``, checked by a fresh guard when answers are checked."""
        return read_chat_completion(response, self.guard())

    def start_attempt(self) -> None:
        self.deadlines.start_attempt()

    def delay_before_retry(self, error: APIError) -> float | None:
        return self.retry.delay_before_retry(error, f"{self.method} {self.path}")

    @contextmanager
    def translating_errors(self) -> Iterator[None]:
        """httpx's failures as ours, for the part of an attempt before any chunk was read."""
        try:
            yield
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise self.deadlines.connect_expired() from exc
        except httpx.TimeoutException as exc:
            raise self.deadlines.expired() from exc
        except httpx.RequestError as exc:
            raise APIConnectionError(f"{self.method} {self.path} failed: {exc!r}") from exc

    def headers_arrived(self) -> None:
        self.deadlines.headers_arrived()

    def streams(self, response: httpx.Response) -> bool:
        """Whether the response is read as a stream; any other answer is read whole."""
        return self.streaming and response.is_success and is_event_stream(response)

    def raise_unstreamable(self, response: httpx.Response) -> NoReturn:
        """Raise the error of a stream request answered with something other than an event stream."""
        if not response.is_success:
            raise status_error(response)
        content_type = response.headers.get("content-type", "none")
        error = parse_error_body(response.content)
        detail = f": {error.message}" if error is not None and error.message else ""
        raise UnexpectedResponseError(
            f"expected an event stream, got {response.status_code} with content type {content_type}{detail}",
            response=response,
            error=error,
            request_id=request_id_of(response.headers),
        )


def read_model_list(response: httpx.Response) -> ModelList:
    return decode_success(response, _model_list_decoder)


def read_chat_completion(response: httpx.Response, guard: ResponseGuard | None = None) -> ChatCompletion:
    """The completion in a read response; a server that streamed anyway gets its stream reassembled.

    With ``guard``, the body is checked (and, for a confidential answer, decrypted) before it is decoded.
    """
    if not (response.is_success and is_event_stream(response)):
        if guard is None:
            return decode_success(response, completion_decoder)
        raw = decode_success(response, _raw_json_decoder)
        try:
            body = guard.open(bytes(raw))
        except ChunkwiseError as exc:
            exc.request_id = request_id_of(response.headers)
            raise
        return decode_body(response, body, completion_decoder)
    core = StreamCore(whole_body_deadlines(), request_id_of(response.headers), guard)
    read_whole_stream(core, response)
    return accumulate(core.received)


def whole_body_deadlines() -> Deadlines:
    """No deadline: for reading a body that is already read."""
    return Deadlines(_NO_TIMEOUTS, streaming=True)


def read_whole_stream(core: EventCore[Any], response: httpx.Response) -> None:
    """Feed ``core`` a stream that is already read whole (a server that streamed a non-stream answer)."""
    core.receive(response.content)
    if core.open:
        core.receive(None)
    core.raise_failure()
