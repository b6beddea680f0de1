"""Streams that go well, on both clients: chunks, text, the final completion, and their lifecycle."""

from __future__ import annotations

import anyio
import pytest

import chunkwise
from chunkwise.types import ChatCompletion, UserMessage

from .fault_server import MODEL, WORDS, FaultServer
from .harness import KINDS, MESSAGES, Kind, run

ANSWER = "".join(WORDS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scenario", ["ok", "one_write", "crlf_split", "no_done"])
def test_chunks_and_final_completion(fault_server: FaultServer, kind: Kind, scenario: str) -> None:
    outcome = run(kind, fault_server.base_url(scenario))

    assert outcome.error is None
    assert [chunk.choices[0].delta.content for chunk in outcome.chunks if chunk.choices] == ["", *WORDS, None]
    assert outcome.chunks[-1].usage is not None
    completion = outcome.completion
    assert completion is not None
    assert completion.choices[0].message.content == ANSWER
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 8
    assert completion.id == "chatcmpl-fault" and completion.model == MODEL


@pytest.mark.parametrize("kind", KINDS)
def test_iter_text_yields_only_content(fault_server: FaultServer, kind: Kind) -> None:
    outcome = run(kind, fault_server.base_url("ok"), how="text")

    assert outcome.texts == WORDS
    assert outcome.completion is not None and outcome.completion.choices[0].message.content == ANSWER


@pytest.mark.parametrize("kind", KINDS)
def test_final_completion_instead_of_iterating(fault_server: FaultServer, kind: Kind) -> None:
    outcome = run(kind, fault_server.base_url("ok"), how="final")

    assert outcome.error is None and outcome.chunks == []
    assert outcome.completion is not None and outcome.completion.choices[0].message.content == ANSWER


@pytest.mark.parametrize("kind", KINDS)
def test_unstreamed_request_returns_the_completion(fault_server: FaultServer, kind: Kind) -> None:
    base_url = fault_server.base_url("ok")
    outcome = run(kind, base_url, how="unstreamed", max_tokens=8)

    assert isinstance(outcome.completion, ChatCompletion)
    assert outcome.completion.choices[0].message.content == "Hello, world!"
    request = fault_server.state(base_url).requests[0]
    assert request.headers["accept"] == "application/json"
    assert "stream" not in request.json and request.json["max_tokens"] == 8


def test_a_stream_answer_to_an_unstreamed_request_is_reassembled(fault_server: FaultServer) -> None:
    # A server that streams although it was not asked to still gives a complete answer.
    with chunkwise.Client(base_url=fault_server.base_url("one_write")) as client:
        completion = client.chat.completions.create(model=MODEL, messages=MESSAGES)

    assert completion.choices[0].message.content == ANSWER


def test_models_list(fault_server: FaultServer) -> None:
    with chunkwise.Client(base_url=fault_server.base_url("ok")) as client:
        models = client.models.list()

    assert [model.id for model in models.data] == [MODEL]


@pytest.mark.anyio
async def test_models_list_async(fault_server: FaultServer) -> None:
    async with chunkwise.AsyncClient(base_url=fault_server.base_url("ok")) as client:
        models = await client.models.list()

    assert [model.id for model in models.data] == [MODEL]


def test_next_and_iteration_share_one_stream(fault_server: FaultServer) -> None:
    with (
        chunkwise.Client(base_url=fault_server.base_url("ok")) as client,
        client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream,
    ):
        first = next(stream)
        rest = list(stream)

    assert first.choices[0].delta.role == "assistant"
    assert len(rest) == 6
    assert stream.final_completion().choices[0].message.content == ANSWER


def test_a_stream_is_iterated_once(fault_server: FaultServer) -> None:
    with chunkwise.Client(base_url=fault_server.base_url("ok")) as client:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        assert len(list(stream)) == 7
        with pytest.raises(chunkwise.StreamConsumedError):
            list(stream)
        # The final completion stays available after the stream was read to its end.
        assert stream.final_completion().choices[0].message.content == ANSWER


def test_final_completion_after_break_is_unknown(fault_server: FaultServer) -> None:
    with chunkwise.Client(base_url=fault_server.base_url("endless")) as client:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        for _ in stream:
            break
        with pytest.raises(chunkwise.StreamConsumedError, match="closed before it finished"):
            stream.final_completion()


@pytest.mark.anyio
async def test_async_next_and_iteration_share_one_stream(fault_server: FaultServer) -> None:
    async with chunkwise.AsyncClient(base_url=fault_server.base_url("ok")) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        async with stream:
            first = await anext(stream)
            rest = [chunk async for chunk in stream]
        with pytest.raises(chunkwise.StreamConsumedError):
            async for _ in stream:
                pass

    assert first.choices[0].delta.role == "assistant"
    assert len(rest) == 6
    assert (await stream.final_completion()).choices[0].message.content == ANSWER


@pytest.mark.parametrize("kind", KINDS)
def test_typed_and_dict_messages_build_one_request(fault_server: FaultServer, kind: Kind) -> None:
    base_url = fault_server.base_url("ok")
    messages = [{"role": "system", "content": "Be brief."}, UserMessage(content="Hi")]
    run(
        kind,
        base_url,
        messages=messages,
        max_tokens=5,
        temperature=0,
        stream_options={"include_usage": True},
        extra_body={"top_k": 40},
    )

    request = fault_server.state(base_url).requests[0]
    assert request.json == {
        "model": "fault-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.0,
        "max_tokens": 5,
        "top_k": 40,
    }
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["content-type"] == "application/json"


def test_unknown_parameter_is_a_type_error() -> None:
    with chunkwise.Client() as client, pytest.raises(TypeError, match="temprature"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, temprature=0.5)


def test_invalid_parameter_value_names_the_field() -> None:
    with chunkwise.Client() as client, pytest.raises(ValueError, match=r"\$\.temperature"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=7)


def test_a_closed_client_refuses_calls() -> None:
    client = chunkwise.Client()
    client.close()
    with pytest.raises(chunkwise.ClientClosedError):
        client.models.list()


def test_async_client_closes_and_refuses_calls() -> None:
    async def main() -> None:
        client = chunkwise.AsyncClient()
        await client.aclose()
        with pytest.raises(chunkwise.ClientClosedError):
            await client.models.list()

    anyio.run(main)


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_that_failed_has_no_final_completion(fault_server: FaultServer, kind: Kind) -> None:
    # The deadline ends the stream after one chunk; asking for the completion raises that error again.
    timeout = chunkwise.Timeouts(idle=0.2)
    outcome = run(kind, fault_server.base_url("keepalive_after_first"), how="final", timeout=timeout)

    assert isinstance(outcome.error, chunkwise.IdleTimeoutError)
    assert outcome.completion is None


def test_final_completion_reraises_the_streams_error(fault_server: FaultServer) -> None:
    with chunkwise.Client(base_url=fault_server.base_url("truncated")) as client:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        with pytest.raises(chunkwise.IncompleteStreamError) as first:
            list(stream)
        with pytest.raises(chunkwise.IncompleteStreamError) as again:
            stream.final_completion()

    assert again.value is first.value


def test_stream_error_from_an_unstreamed_request(fault_server: FaultServer) -> None:
    # A server that streams an error frame although no stream was asked for.
    with (
        chunkwise.Client(base_url=fault_server.base_url("error_mid_stream")) as client,
        pytest.raises(chunkwise.StreamError, match="engine crashed") as info,
    ):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)

    assert info.value.request_id == "req-1"
