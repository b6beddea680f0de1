"""Drives the official Atoma Python SDK, unmodified, in its own venv (.venv-atoma): drive.py URL MODEL MODE [KEY].

MODE is create, create_async, stream or stream_async (confidential chat), or embeddings or
confidential_embeddings, or nodes_create (then MODEL is the JSON of its `data` and `signature`). Prints one
JSON line: {"content": ..., "usage": ...} for the creates, {"chunks": [...]} for the streams,
{"embeddings": [...], "usage": ...} for the embeddings, {"message": ...} for nodes_create.
"""

import asyncio
import json
import sys
from typing import Any

from atoma_sdk import AtomaSDK

URL, MODEL, MODE = sys.argv[1:4]
KEY = sys.argv[4] if len(sys.argv) > 4 else "not-checked"
REQUEST = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Say hello in five words."}],
    "max_tokens": 12,
    "temperature": 0.0,
}


def completion(result: Any) -> dict[str, Any]:
    usage = result.usage.model_dump(mode="json") if result.usage else None
    return {"content": result.choices[0].message.content, "usage": usage}


EMBEDDING_INPUT = ["The cat sat on the mat.", "A kitten rested on the rug."]


def embeddings(result: Any) -> dict[str, Any]:
    return {"embeddings": [item.embedding for item in result.data], "usage": result.usage.model_dump(mode="json")}


def run() -> dict[str, Any]:
    with AtomaSDK(bearer_auth=KEY, server_url=URL) as sdk:
        if MODE == "nodes_create":
            return {"message": sdk.nodes.nodes_create(**json.loads(MODEL)).message}
        if MODE == "embeddings":
            return embeddings(sdk.embeddings.create(model=MODEL, input_=EMBEDDING_INPUT))
        if MODE == "confidential_embeddings":
            return embeddings(sdk.confidential_embeddings.create(model=MODEL, input=EMBEDDING_INPUT))
        if MODE == "create":
            return completion(sdk.confidential_chat.create(**REQUEST))
        with sdk.confidential_chat.create_stream(**REQUEST) as stream:
            return {"chunks": [event.data.model_dump(mode="json") for event in stream]}


async def run_async() -> dict[str, Any]:
    async with AtomaSDK(bearer_auth=KEY, server_url=URL) as sdk:
        if MODE == "create_async":
            return completion(await sdk.confidential_chat.create_async(**REQUEST))
        stream = await sdk.confidential_chat.create_stream_async(**REQUEST)
        async with stream:
            return {"chunks": [event.data.model_dump(mode="json") async for event in stream]}


print(json.dumps(asyncio.run(run_async()) if MODE.endswith("_async") else run()))
