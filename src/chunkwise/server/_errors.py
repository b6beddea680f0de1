"""The server's own errors; every other error it answers with comes from the root tree or the edge.

::

    chunkwise._errors.APIStatusError            answered with ``status`` and the OpenAI error body
    ├── BadRequestError 400, AuthenticationError 401, NotFoundError 404, MethodNotAllowedError 405,
    │   RequestTooLargeError 413, UnsupportedMediaTypeError 415, ...   (root; the edge's body errors below them)
    ├── NotFoundError
    │   └── ModelNotFoundError     404 ``model_not_found``
    ├── RateLimitError
    │   └── QueueFullError         429 with ``Retry-After``: the engine's queue is full
    └── (engine) InvalidRequestError  the request cannot be honoured; carries its own status
    EngineError                    (engine) the model failed; 500, or an in-band frame once streaming

:func:`chunkwise.edge.error_response` turns any of them (and any other exception, as a 500) into the
answer; no traceback ever reaches a client.
"""

from __future__ import annotations

from .._errors import NotFoundError, RateLimitError

__all__ = ["ModelNotFoundError", "QueueFullError"]


class ModelNotFoundError(NotFoundError):
    def __init__(self, model: str, served: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist; this server serves `{served}`.",
            param="model",
            code="model_not_found",
        )


class QueueFullError(RateLimitError):
    def __init__(self, queue_size: int, retry_after: int) -> None:
        super().__init__(
            f"The server is busy: {queue_size} requests are already waiting. Retry after {retry_after} s.",
            code="queue_full",
            headers={"Retry-After": str(retry_after)},
        )
