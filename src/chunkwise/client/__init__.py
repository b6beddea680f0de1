"""The client side: ``Client`` and ``AsyncClient`` for any OpenAI-compatible server, in three dialects:
``client.chat.completions``, ``client.responses`` (OpenAI's Responses API) and ``client.messages`` (Anthropic's
Messages API).

>>> import chunkwise
>>> with chunkwise.Client(base_url="http://127.0.0.1:8000/v1") as client:
...     with client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], stream=True) as s:
...         print("".join(s.iter_text()))
"""

from __future__ import annotations

from ._client import AsyncClient, Client
from ._config import USE_CLIENT_DEFAULT, UseClientDefault
from ._dialect_streams import AsyncMessagesStream, AsyncResponsesStream, MessagesStream, ResponsesStream
from ._errors import *
from ._resources import (
    AsyncChat,
    AsyncChatCompletions,
    AsyncConfidential,
    AsyncConfidentialChat,
    AsyncConfidentialChatCompletions,
    AsyncMessages,
    AsyncModels,
    AsyncResponses,
    Chat,
    ChatCompletions,
    Confidential,
    ConfidentialChat,
    ConfidentialChatCompletions,
    Messages,
    Models,
    Responses,
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
    "AsyncMessages",
    "AsyncMessagesStream",
    "AsyncModels",
    "AsyncResponses",
    "AsyncResponsesStream",
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
    "Messages",
    "MessagesStream",
    "Models",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "Responses",
    "ResponsesStream",
    "Stream",
    "Timeouts",
    "TotalTimeoutError",
    "USE_CLIENT_DEFAULT",
    "UnexpectedResponseError",
    "UnprocessableEntityError",
    "UseClientDefault",
]
