"""``chunkwise chat --api responses|messages`` against the scripted dialect server (real uvicorn, real SSE).

The answers are scripted, so the exact text, the usage line and every raw event are known.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest
from click.testing import CliRunner

from chunkwise.cli import main
from chunkwise.dialects import MessagesStreamEvent, ResponseStreamEvent
from tests.client.dialect_server import MODEL, TEXT, DialectServer, dialect_server

APIS = ["responses", "messages"]


@pytest.fixture(scope="module")
def server() -> Iterator[DialectServer]:
    with dialect_server() as running:
        yield running


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHUNKWISE_BASE_URL", "CHUNKWISE_API_KEY", "OPENAI_API_KEY", "ATOMASDK_BEARER_AUTH"):
        monkeypatch.delenv(name, raising=False)


def run(base_url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["chat", "--base-url", base_url, "--model", MODEL, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("api", APIS)
def test_prints_the_streamed_text_and_the_stats(server: DialectServer, api: str) -> None:
    base_url = server.base_url("text")
    code, out, err = run(base_url, "--api", api, "--temperature", "0", "--max-tokens", "12", "Say hello")

    assert code == 0
    assert out == TEXT + "\n"
    assert "first token" in err and "tokens/s" in err
    assert "usage 5 prompt + 4 completion = 9" in err
    (request,) = server.requests(base_url)
    assert request.path.endswith(f"/v1/{api}")
    assert request.body["stream"] is True and request.body["temperature"] == 0
    assert request.body["max_output_tokens" if api == "responses" else "max_tokens"] == 12


@pytest.mark.parametrize("api", APIS)
def test_json_prints_the_raw_events(server: DialectServer, api: str) -> None:
    code, out, _ = run(server.base_url("tools"), "--api", api, "--json", "What is the weather?")

    assert code == 0
    event_type = ResponseStreamEvent if api == "responses" else MessagesStreamEvent
    events = [msgspec.json.decode(line, type=event_type) for line in out.splitlines()]
    names = [msgspec.json.decode(line)["type"] for line in out.splitlines()]
    if api == "responses":
        assert names[0] == "response.created" and names[-1] == "response.completed"
        assert names.count("response.output_item.added") == 2
    else:
        assert names[0] == "message_start" and names[-1] == "message_stop"
        assert names.count("content_block_start") == 2
    assert len(events) == len(names)


def test_the_system_prompt_goes_where_each_api_wants_it(server: DialectServer) -> None:
    responses_url, messages_url = server.base_url("text"), server.base_url("text")
    run(responses_url, "--api", "responses", "--system", "Be brief", "Hi")
    run(messages_url, "--api", "messages", "--system", "Be brief", "Hi")

    responses, messages = server.requests(responses_url)[0].body, server.requests(messages_url)[0].body
    assert responses["input"] == [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}]
    assert messages["system"] == "Be brief"
    assert messages["messages"] == [{"role": "user", "content": "Hi"}]
    assert messages["max_tokens"] == 4096  # Messages requires one; --max-tokens was not given


@pytest.mark.parametrize("api", APIS)
def test_an_error_event_is_one_clear_line(server: DialectServer, api: str) -> None:
    code, out, err = run(server.base_url("error-event"), "--api", api, "Hi")

    assert code == 1
    assert out == "Hello,"  # what arrived before the error
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "engine crashed" in lines[0]


def test_chat_only_options_are_refused_with_another_api(server: DialectServer) -> None:
    code, _, err = run(server.base_url("text"), "--api", "messages", "--confidential", "Hi")
    assert code == 2
    assert "--api chat" in err
