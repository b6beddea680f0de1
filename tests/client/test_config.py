"""Configuration: base URL and API key from arguments or the environment, headers, query, injected httpx."""

from __future__ import annotations

import types

import anyio
import httpx
import pytest

import chunkwise
import chunkwise.client

from .fault_server import FaultServer
from .harness import KINDS, MESSAGES, Kind, run


def test_defaults_without_environment() -> None:
    with chunkwise.Client() as client:
        assert str(client.base_url) == "http://127.0.0.1:8000/v1/"
        assert client.max_retries == 2
        assert client.timeouts == chunkwise.Timeouts()
        assert "authorization" not in client._config.headers


def test_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUNKWISE_BASE_URL", "https://api.atoma.network/v1")
    with chunkwise.Client() as client:
        assert str(client.base_url) == "https://api.atoma.network/v1/"
    with chunkwise.Client(base_url="http://other:1/v1/") as client:
        assert str(client.base_url) == "http://other:1/v1/"


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"OPENAI_API_KEY": "openai"}, "openai"),
        ({"ATOMASDK_BEARER_AUTH": "atoma", "OPENAI_API_KEY": "openai"}, "atoma"),
        ({"CHUNKWISE_API_KEY": "ours", "ATOMASDK_BEARER_AUTH": "atoma", "OPENAI_API_KEY": "openai"}, "ours"),
        ({"CHUNKWISE_API_KEY": "", "OPENAI_API_KEY": "openai"}, "openai"),
    ],
)
def test_api_key_precedence(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: str) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with chunkwise.Client() as client:
        assert client._config.headers["authorization"] == f"Bearer {expected}"
    with chunkwise.Client(api_key="explicit") as client:
        assert client._config.headers["authorization"] == "Bearer explicit"


@pytest.mark.parametrize("kind", KINDS)
def test_headers_and_query_reach_the_server(
    fault_server: FaultServer, kind: Kind, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATOMASDK_BEARER_AUTH", "secret")
    base_url = fault_server.base_url("ok")
    run(
        kind,
        base_url,
        client={"default_headers": {"x-team": "a", "x-both": "client"}, "default_query": {"api-version": "1"}},
        extra_headers={"x-both": "call"},
    )

    request = fault_server.state(base_url).requests[0]
    assert request.headers["authorization"] == "Bearer secret"
    assert request.headers["x-team"] == "a"
    assert request.headers["x-both"] == "call"
    assert request.headers["user-agent"] == f"chunkwise/{chunkwise.__version__}"
    assert request.path.endswith("/v1/chat/completions?api-version=1")


def test_injected_http_client_is_used_and_left_open(fault_server: FaultServer) -> None:
    base_url = fault_server.base_url("ok")
    with httpx.Client(headers={"x-injected": "yes"}) as http_client:
        client = chunkwise.Client(base_url=base_url, http_client=http_client)
        client.models.list()
        client.close()
        assert not http_client.is_closed
    assert fault_server.state(base_url).requests[0].headers["x-injected"] == "yes"


def test_injected_transport(fault_server: FaultServer) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        events = b'data: {"choices":[{"index":0,"delta":{"content":"mock"},"finish_reason":"stop"}]}\n\n'
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=events)

    with chunkwise.Client(base_url="http://mock/v1", transport=httpx.MockTransport(handler)) as client:
        stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        assert "".join(stream.iter_text()) == "mock"
    assert str(seen[0].url) == "http://mock/v1/chat/completions"


def test_injected_async_transport() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"object": "list", "data": [{"id": "a"}, {"id": "b"}]})

    async def main() -> list[str]:
        async with chunkwise.AsyncClient(base_url="http://mock/v1", transport=httpx.MockTransport(handler)) as client:
            return [model.id for model in (await client.models.list()).data]

    assert anyio.run(main) == ["a", "b"]


def test_http_client_and_transport_are_exclusive() -> None:
    with httpx.Client() as http_client, pytest.raises(ValueError):
        chunkwise.Client(http_client=http_client, transport=httpx.HTTPTransport())


def test_negative_max_retries_is_refused() -> None:
    with pytest.raises(ValueError):
        chunkwise.Client(max_retries=-1)


def test_client_reprs() -> None:
    with chunkwise.Client(base_url="http://h:1/v1", api_key="secret") as client:
        assert repr(client) == "Client(base_url='http://h:1/v1/')"


@pytest.mark.parametrize("module", [chunkwise, chunkwise.client])
def test_exported_names_are_sorted_and_complete(module: object) -> None:
    exported = module.__all__  # type: ignore[attr-defined]
    assert exported == sorted(exported)
    # Submodules appear as attributes once anything imported them (which depends on test order): not names.
    public = {
        name
        for name in dir(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), types.ModuleType)
    } - {"annotations"}
    assert set(exported) - {"__version__"} == public


def test_every_error_has_the_one_root() -> None:
    errors = [getattr(chunkwise, name) for name in chunkwise.__all__ if name.endswith("Error")]
    assert errors and all(issubclass(error, chunkwise.ChunkwiseError) for error in errors)
    assert issubclass(chunkwise.APITimeoutError, chunkwise.APIConnectionError)
    assert issubclass(chunkwise.StreamConsumedError, RuntimeError)


def test_base_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        chunkwise.Client(base_url="ftp://example.com/v1")


@pytest.mark.parametrize("bad", [0, -1.0])
def test_timeouts_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="idle"):
        chunkwise.Timeouts(idle=bad)


BAD_SETTINGS = [
    ({"base_url": "http://example.com:port/v1"}, "base_url"),
    ({"base_url": "ftp://example.com/v1"}, "http"),
    ({"verify_key": "not a key"}, "verify_key"),
    ({"timeout": 0}, "Timeouts.connect"),
    ({"max_retries": -1}, "max_retries"),
]


@pytest.mark.parametrize(("settings", "match"), BAD_SETTINGS)
def test_invalid_settings_are_config_errors(settings: dict[str, object], match: str) -> None:
    with pytest.raises(chunkwise.ClientConfigError, match=match) as info:
        chunkwise.Client(**settings)  # type: ignore[arg-type]
    # In the one tree, and still the ValueError it was.
    assert isinstance(info.value, chunkwise.ChunkwiseError) and isinstance(info.value, ValueError)


def test_an_invalid_per_call_timeout_is_a_config_error(fault_server: FaultServer) -> None:
    base_url = fault_server.base_url("ok")
    with chunkwise.Client(base_url=base_url) as client, pytest.raises(chunkwise.ClientConfigError, match="idle"):
        client.chat.completions.create(model="m", messages=MESSAGES, timeout=chunkwise.Timeouts(idle=-1))
    assert not fault_server.state(base_url).requests


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("confidential", [False, True])
def test_a_lone_surrogate_is_refused_before_sending(fault_server: FaultServer, kind: Kind, confidential: bool) -> None:
    base_url = fault_server.base_url("ok")
    messages = [{"role": "user", "content": "half a pair: \ud83d"}]

    async def create_async() -> None:
        async with chunkwise.AsyncClient(base_url=base_url) as client:
            chat = client.confidential.chat if confidential else client.chat
            await chat.completions.create(model="m", messages=messages)

    with pytest.raises(chunkwise.RequestValidationError, match="not valid Unicode") as info:
        if kind == "async":
            anyio.run(create_async)
        else:
            with chunkwise.Client(base_url=base_url) as client:
                chat = client.confidential.chat if confidential else client.chat
                chat.completions.create(model="m", messages=messages)
    assert isinstance(info.value, ValueError)
    assert not fault_server.state(base_url).requests
