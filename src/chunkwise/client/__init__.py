"""The client side: ``Client`` and ``AsyncClient`` for any OpenAI-compatible server.

>>> import chunkwise
>>> with chunkwise.Client(base_url="http://127.0.0.1:8000/v1") as client:
...     with client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], stream=True) as s:
...         print("".join(s.iter_text()))
"""

from __future__ import annotations

from ._client import AsyncClient, Client
from ._config import USE_CLIENT_DEFAULT, UseClientDefault
from ._errors import *
from ._resources import (
    AsyncChat,
    AsyncChatCompletions,
    AsyncConfidential,
    AsyncConfidentialChat,
    AsyncConfidentialChatCompletions,
    AsyncModels,
    Chat,
    ChatCompletions,
    Confidential,
    ConfidentialChat,
    ConfidentialChatCompletions,
    Models,
)
from ._retries import Backoff
from ._streaming import AsyncStream, Stream
from ._timeouts import Timeouts

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncChat",
    "AsyncChatCompletions",
    "AsyncClient",
    "AsyncConfidential",
    "AsyncConfidentialChat",
    "AsyncConfidentialChatCompletions",
    "AsyncModels",
    "AsyncStream",
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "Chat",
    "ChatCompletions",
    "Client",
    "Confidential",
    "ConfidentialChat",
    "ConfidentialChatCompletions",
    "ConflictError",
    "ConnectTimeoutError",
    "FirstChunkTimeoutError",
    "IdleTimeoutError",
    "InternalServerError",
    "Models",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "Stream",
    "Timeouts",
    "TotalTimeoutError",
    "USE_CLIENT_DEFAULT",
    "UnexpectedResponseError",
    "UnprocessableEntityError",
    "UseClientDefault",
]
