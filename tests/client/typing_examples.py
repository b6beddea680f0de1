"""Checked by mypy (see test_typing.py), never run: what a type checker infers from the client API."""

from __future__ import annotations

from typing import assert_type

import chunkwise
from chunkwise.types import ChatCompletion, ChatCompletionChunk, ModelList, UserMessage

MESSAGES = [{"role": "user", "content": "Hi"}]


def sync_client(client: chunkwise.Client, flag: bool) -> None:
    assert_type(client.chat.completions.create(model="m", messages=MESSAGES), ChatCompletion)
    assert_type(client.chat.completions.create(model="m", messages=MESSAGES, stream=False), ChatCompletion)
    stream = client.chat.completions.create(model="m", messages=[UserMessage(content="Hi")], stream=True, max_tokens=5)
    assert_type(stream, chunkwise.Stream)
    assert_type(
        client.chat.completions.create(model="m", messages=MESSAGES, stream=flag), ChatCompletion | chunkwise.Stream
    )
    with stream:
        for chunk in stream:
            assert_type(chunk, ChatCompletionChunk)
        for text in stream.iter_text():
            assert_type(text, str)
        assert_type(next(stream), ChatCompletionChunk)
        assert_type(stream.final_completion(), ChatCompletion)
    assert_type(client.models.list(), ModelList)
    confidential = client.confidential.chat.completions
    assert_type(confidential.create(model="m", messages=MESSAGES), ChatCompletion)
    assert_type(confidential.create(model="m", messages=MESSAGES, stream=True), chunkwise.Stream)


async def async_client(client: chunkwise.AsyncClient, flag: bool) -> None:
    assert_type(await client.chat.completions.create(model="m", messages=MESSAGES), ChatCompletion)
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert_type(stream, chunkwise.AsyncStream)
    assert_type(
        await client.chat.completions.create(model="m", messages=MESSAGES, stream=flag),
        ChatCompletion | chunkwise.AsyncStream,
    )
    async with stream:
        async for chunk in stream:
            assert_type(chunk, ChatCompletionChunk)
        async for text in stream.iter_text():
            assert_type(text, str)
        assert_type(await anext(stream), ChatCompletionChunk)
        assert_type(await stream.final_completion(), ChatCompletion)
    assert_type(await client.models.list(), ModelList)
    confidential = client.confidential.chat.completions
    assert_type(await confidential.create(model="m", messages=MESSAGES), ChatCompletion)
    assert_type(await confidential.create(model="m", messages=MESSAGES, stream=True), chunkwise.AsyncStream)
    assert_type(
        await confidential.create(model="m", messages=MESSAGES, stream=flag), ChatCompletion | chunkwise.AsyncStream
    )


def errors(error: chunkwise.APIStatusError, timeout: chunkwise.APITimeoutError) -> None:
    assert_type(error.status_code, int)
    assert_type(error.request_id, str | None)
    assert_type(timeout.deadline, str)


def dialects(client: chunkwise.Client, flag: bool) -> None:
    from chunkwise.client import MessagesStream, ResponsesStream
    from chunkwise.dialects import MessagesResponse, MessagesStreamEvent, ResponseObject, ResponseStreamEvent

    assert_type(client.responses.create(model="m", input="Hi"), ResponseObject)
    responses = client.responses.create(model="m", input="Hi", stream=True, max_output_tokens=5)
    assert_type(responses, ResponsesStream)
    assert_type(client.responses.create(model="m", input="Hi", stream=flag), ResponseObject | ResponsesStream)
    with responses:
        for event in responses:
            assert_type(event, ResponseStreamEvent)
        assert_type(responses.final_response(), ResponseObject)
    assert_type(client.messages.create(model="m", messages=MESSAGES, max_tokens=5), MessagesResponse)
    messages = client.messages.create(model="m", messages=MESSAGES, max_tokens=5, stream=True)
    assert_type(messages, MessagesStream)
    with messages:
        for message_event in messages:
            assert_type(message_event, MessagesStreamEvent)
        for text in messages.iter_text():
            assert_type(text, str)
        assert_type(messages.final_message(), MessagesResponse)


async def async_dialects(client: chunkwise.AsyncClient) -> None:
    from chunkwise.client import AsyncMessagesStream, AsyncResponsesStream
    from chunkwise.dialects import MessagesResponse, ResponseObject, ResponseStreamEvent

    assert_type(await client.responses.create(model="m", input="Hi"), ResponseObject)
    responses = await client.responses.create(model="m", input="Hi", stream=True)
    assert_type(responses, AsyncResponsesStream)
    async with responses:
        async for event in responses:
            assert_type(event, ResponseStreamEvent)
        assert_type(await responses.final_response(), ResponseObject)
    assert_type(await client.messages.create(model="m", messages=MESSAGES, max_tokens=5), MessagesResponse)
    messages = await client.messages.create(model="m", messages=MESSAGES, max_tokens=5, stream=True)
    assert_type(messages, AsyncMessagesStream)
    async with messages:
        async for text in messages.iter_text():
            assert_type(text, str)
        assert_type(await messages.final_message(), MessagesResponse)
