"""``client.responses``, ``client.messages`` and ``chunkwise chat --api`` end to end against ``chunkwise serve``.

The real engine on the bundled model behind the real app: greedy answers are compared with what the official
SDKs (openai-python, anthropic) get from the same server for the same request, so the client and the SDKs must
read the server's streams and whole answers alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import anyio
import openai
import pytest
from click.testing import CliRunner

import chunkwise
from chunkwise.cli import main
from chunkwise.dialects import MessagesResponse, TextBlock
from chunkwise.engine import DEFAULT_MODEL_ID, LlamaCppEngine
from chunkwise.server import ServerSettings, create_app
from tests.server.conftest import RunningServer, serve

pytestmark = [pytest.mark.engine, pytest.mark.timeout(180)]

PROMPT = "Name a color."
MAX_TOKENS = 12
KEY = "sk-dialects"


@pytest.fixture(scope="module")
def server(engine: LlamaCppEngine) -> Iterator[RunningServer]:
    app = create_app(engine, ServerSettings(api_key=KEY))
    if not any(getattr(route, "path", None) == "/v1/messages" for route in app.routes):
        pytest.skip("this chunkwise serve has no /v1/responses and /v1/messages yet (issue 18, item 2)")
    with serve(app) as running:
        yield running


def message_text(message: MessagesResponse) -> str:
    return "".join(block.text for block in message.content if isinstance(block, TextBlock))


def test_responses_stream_matches_openai_python(server: RunningServer) -> None:
    with chunkwise.Client(base_url=f"{server.url}/v1", api_key=KEY) as client:
        with client.responses.create(
            model=DEFAULT_MODEL_ID, input=PROMPT, stream=True, temperature=0, max_output_tokens=MAX_TOKENS
        ) as stream:
            texts = list(stream.iter_text())
            final = stream.final_response()
        whole = client.responses.create(
            model=DEFAULT_MODEL_ID, input=PROMPT, temperature=0, max_output_tokens=MAX_TOKENS
        )
    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    expected = sdk.responses.create(model=DEFAULT_MODEL_ID, input=PROMPT, temperature=0, max_output_tokens=MAX_TOKENS)

    assert texts and "".join(texts) == final.output_text == whole.output_text == expected.output_text
    assert final.status == whole.status == expected.status
    assert final.usage is not None and expected.usage is not None
    assert final.usage.output_tokens == expected.usage.output_tokens


def test_messages_stream_matches_the_anthropic_sdk(server: RunningServer) -> None:
    messages: Any = [{"role": "user", "content": PROMPT}]
    greedy: Any = {"temperature": 0, "top_k": 1}

    async def ours() -> tuple[list[str], MessagesResponse, MessagesResponse]:
        # The key goes in x-api-key (and Authorization): the server takes either.
        async with chunkwise.AsyncClient(base_url=f"{server.url}/v1", api_key=KEY) as client:
            stream = await client.messages.create(
                model=DEFAULT_MODEL_ID, messages=messages, max_tokens=MAX_TOKENS, stream=True, **greedy
            )
            async with stream:
                texts = [text async for text in stream.iter_text()]
                final = await stream.final_message()
            whole = await client.messages.create(
                model=DEFAULT_MODEL_ID, messages=messages, max_tokens=MAX_TOKENS, **greedy
            )
        return texts, final, whole

    texts, final, whole = anyio.run(ours)
    sdk = anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0)
    expected = sdk.messages.create(model=DEFAULT_MODEL_ID, messages=messages, max_tokens=MAX_TOKENS, extra_body=greedy)
    expected_text = "".join(block.text for block in expected.content if block.type == "text")

    assert texts and "".join(texts) == message_text(final) == message_text(whole) == expected_text
    assert final.stop_reason == whole.stop_reason == expected.stop_reason
    assert final.usage.output_tokens == expected.usage.output_tokens


@pytest.mark.parametrize("dialect", ["responses", "messages"])
def test_an_unknown_model_is_a_not_found_error(server: RunningServer, dialect: str) -> None:
    with (
        chunkwise.Client(base_url=f"{server.url}/v1", api_key=KEY) as client,
        pytest.raises(chunkwise.NotFoundError) as caught,
    ):
        if dialect == "responses":
            client.responses.create(model="no-such-model", input=PROMPT, stream=True)
        else:
            client.messages.create(
                model="no-such-model", messages=[{"role": "user", "content": PROMPT}], max_tokens=4, stream=True
            )
    error = caught.value.error
    assert error is not None and error.message
    if dialect == "messages":  # Anthropic's shape, read into the same error
        assert error.type == "not_found_error"


def test_a_wrong_key_is_an_authentication_error(server: RunningServer) -> None:
    with (
        chunkwise.Client(base_url=f"{server.url}/v1", api_key="wrong") as client,
        pytest.raises(chunkwise.AuthenticationError),
    ):
        client.messages.create(model=DEFAULT_MODEL_ID, messages=[{"role": "user", "content": PROMPT}], max_tokens=4)


@pytest.mark.parametrize("api", ["responses", "messages"])
def test_chat_cli_with_another_api_prints_the_same_answer(server: RunningServer, api: str) -> None:
    args = ["--base-url", f"{server.url}/v1", "--api-key", KEY, "--temperature", "0", "--max-tokens", str(MAX_TOKENS)]
    chat = CliRunner().invoke(main, ["chat", *args, PROMPT])
    other = CliRunner().invoke(main, ["chat", *args, "--api", api, PROMPT])

    assert chat.exit_code == other.exit_code == 0, other.output
    assert other.stdout == chat.stdout and other.stdout.strip()
    assert "usage" in other.stderr and "first token" in other.stderr
