"""Client configuration: what the constructor arguments and the environment resolve to.

The environment is read when a client is constructed, never at import time, and nothing is kept at
module level.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from .._errors import ClientConfigError
from .._version import __version__
from ._retries import Backoff
from ._timeouts import Timeouts

__all__ = [
    "ANTHROPIC_VERSION",
    "API_KEY_VARIABLES",
    "BASE_URL_VARIABLE",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "USE_CLIENT_DEFAULT",
    "ClientConfig",
    "UseClientDefault",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
BASE_URL_VARIABLE = "CHUNKWISE_BASE_URL"
#: Tried in this order; the first one that is set and not empty wins.
API_KEY_VARIABLES = ("CHUNKWISE_API_KEY", "ATOMASDK_BEARER_AUTH", "OPENAI_API_KEY")
DEFAULT_MAX_RETRIES = 2
#: The Messages API version every Anthropic-compatible server understands (Anthropic's SDKs send the same).
ANTHROPIC_VERSION = "2023-06-01"


class UseClientDefault(enum.Enum):
    """The type of :data:`USE_CLIENT_DEFAULT`.

    A per-call ``timeout=None`` means "no timeouts", so "not given" needs a value of its own.
    """

    USE_CLIENT_DEFAULT = "USE_CLIENT_DEFAULT"

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT = UseClientDefault.USE_CLIENT_DEFAULT


@dataclass(frozen=True, slots=True)
class ClientConfig:
    #: Always ends with ``/`` so that relative paths join below it.
    base_url: httpx.URL
    api_key: str | None
    headers: httpx.Headers
    query: httpx.QueryParams
    timeouts: Timeouts
    max_retries: int
    backoff: Backoff

    @classmethod
    def resolve(
        cls,
        *,
        base_url: str | httpx.URL | None,
        api_key: str | None,
        timeout: Timeouts | float | None,
        max_retries: int,
        backoff: Backoff,
        default_headers: Mapping[str, str] | None,
        default_query: Mapping[str, str] | None,
        environ: Mapping[str, str] | None = None,
    ) -> ClientConfig:
        env = os.environ if environ is None else environ
        if max_retries < 0:
            raise ClientConfigError("max_retries must not be negative")
        text = str(base_url) if base_url is not None else env.get(BASE_URL_VARIABLE) or DEFAULT_BASE_URL
        try:
            url = httpx.URL(text)
        except httpx.InvalidURL as exc:
            raise ClientConfigError(f"base_url {text!r} is not a URL: {exc}") from None
        if url.scheme not in ("http", "https"):
            raise ClientConfigError(f"base_url must be an http:// or https:// URL, not {str(url)!r}")
        if not url.raw_path.endswith(b"/"):
            url = url.copy_with(raw_path=url.raw_path + b"/")
        if api_key is None:
            api_key = next((env[name] for name in API_KEY_VARIABLES if env.get(name)), None)
        headers = httpx.Headers({"user-agent": f"chunkwise/{__version__}"})
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        headers.update(default_headers or {})
        return cls(
            base_url=url,
            api_key=api_key,
            headers=headers,
            query=httpx.QueryParams(default_query or {}),
            timeouts=Timeouts.coerce(timeout),
            max_retries=max_retries,
            backoff=backoff,
        )

    def messages_headers(self) -> httpx.Headers:
        """The headers of a Messages request: Anthropic's ``x-api-key`` and ``anthropic-version`` beside the rest.

        The key goes in ``x-api-key`` (what Anthropic and the proxies in its image read) and stays in
        ``Authorization`` too (what vLLM, llama-server, Ollama and OpenAI-style gateways read on their
        ``/v1/messages``; chunkwise reads either): with both, every kind of server finds it. Anthropic's own
        API is the exception: it reads a bearer token as an OAuth token and refuses an API key there, so to an
        ``anthropic.com`` host only ``x-api-key`` goes. Headers set in ``default_headers`` win.
        """
        headers = httpx.Headers(self.headers)
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
        if self.api_key:
            headers.setdefault("x-api-key", self.api_key)
            host = self.base_url.host
            if (host == "anthropic.com" or host.endswith(".anthropic.com")) and headers.get(
                "authorization"
            ) == f"Bearer {self.api_key}":
                del headers["authorization"]
        return headers
