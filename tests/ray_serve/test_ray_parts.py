"""The Ray layer's two halves without a cluster: the replica on the real engine, the ingress's retry rules.

A replica's process cannot be killed at an exact moment (after routing, before its first chunk) on a real
cluster, so the retry rules run against a stand-in for Ray Serve's handle that fails on cue, raising Ray's
own exception types; everything else is real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import msgspec
import pytest
from ray import exceptions

from chunkwise import EngineError
from chunkwise.engine import DEFAULT_MODEL_ID, LlamaCppEngine
from chunkwise.ray import EngineReplica, RayEngine
from chunkwise.ray._load import DeploymentLoad
from chunkwise.ray._messages import ChatPiece, ReplicaHeader, ReplicaRequest, decode_message, encode_message
from chunkwise.types import ChatCompletionChunk, ChatCompletionRequest

pytestmark = pytest.mark.anyio

NO_EOS = {"0": -100.0, "2": -100.0}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def chat_request(max_tokens: int, **fields: Any) -> ChatCompletionRequest:
    body = {
        "model": DEFAULT_MODEL_ID,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        **fields,
    }
    return msgspec.convert(body, ChatCompletionRequest)


def replica_request(request: ChatCompletionRequest) -> ReplicaRequest:
    return ReplicaRequest("chat", msgspec.json.encode(request), "chatcmpl-test", 1, prompt="Tell me")


async def test_a_replica_streams_a_header_then_every_chunk_with_its_token_count(engine: LlamaCppEngine) -> None:
    replica = EngineReplica({}, engine=engine)
    messages = [decode_message(data) async for data in replica.generate(replica_request(chat_request(6)))]
    header, *pieces = messages
    assert isinstance(header, ReplicaHeader) and header.ongoing == 1 and header.served == 1
    assert all(isinstance(piece, ChatPiece) for piece in pieces)
    counts = [piece.completion_tokens for piece in pieces if isinstance(piece, ChatPiece)]
    assert counts == sorted(counts) and counts[-1] == 6
    next_header = decode_message(await anext(aiter(replica.generate(replica_request(chat_request(1))))))
    assert isinstance(next_header, ReplicaHeader) and next_header.generated_tokens == 6


async def test_closing_a_replica_stream_stops_the_engine_and_counts_a_cancel(engine: LlamaCppEngine) -> None:
    replica = EngineReplica({}, engine=engine)
    stream = replica.generate(replica_request(chat_request(500, logit_bias=NO_EOS)))
    for _ in range(4):
        await anext(stream)
    await stream.aclose()
    header = decode_message(await anext(aiter(replica.generate(replica_request(chat_request(1))))))
    assert isinstance(header, ReplicaHeader)
    assert header.cancelled == 1
    assert header.generated_tokens <= 4  # three pieces delivered, at most one more token in flight
    # The engine is free again: a whole generation runs after the cancelled one.
    done = [decode_message(data) async for data in replica.generate(replica_request(chat_request(3)))]
    assert isinstance(done[-1], ChatPiece) and done[-1].completion_tokens == 3


class _WedgedEngine:
    """An engine whose generation never produces a chunk (a hung decode cannot be made on purpose)."""

    model_id = DEFAULT_MODEL_ID
    context_length = 1024

    def prepare_chat(self, request: Any, *, request_id: str, created: int) -> Any:
        class Stuck:
            prompt_tokens = 1
            completion_tokens = 0
            chunks: AsyncGenerator[ChatCompletionChunk, None] | None = None

            async def _stream(self) -> AsyncGenerator[ChatCompletionChunk, None]:
                await asyncio.Event().wait()
                yield ChatCompletionChunk(id="", created=0, model="", choices=[])

            def stream(self) -> AsyncIterator[ChatCompletionChunk]:
                self.chunks = self._stream()
                return self.chunks

            async def aclose(self) -> None:
                if self.chunks is not None:
                    await self.chunks.aclose()

        return Stuck()

    def prepare_completion(self, request: Any, *, request_id: str, created: int) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


async def test_the_health_check_fails_when_running_generations_stop_progressing() -> None:
    replica = EngineReplica({}, engine=_WedgedEngine(), stall_timeout=0.05)
    replica.check_health()  # idle is healthy
    stream = replica.generate(replica_request(chat_request(5)))
    await anext(stream)
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.2)
    with pytest.raises(EngineError, match="no progress"):
        replica.check_health()
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    replica.check_health()  # nothing running any more


class _Call:
    """Stands in for Ray Serve's ``DeploymentResponseGenerator``: yields ``items``, raising any exception."""

    def __init__(self, items: list[bytes | Exception]) -> None:
        self._items = items
        self.was_cancelled = False

    def __aiter__(self) -> _Call:
        return self

    async def __anext__(self) -> bytes:
        if not self._items:
            raise StopAsyncIteration
        item = self._items.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def cancel(self) -> None:
        self.was_cancelled = True

    def cancelled(self) -> bool:
        return self.was_cancelled


class _Handle:
    """Stands in for ``DeploymentHandle``: each ``generate.remote`` call returns the next scripted call."""

    def __init__(self, calls: list[_Call]) -> None:
        self.calls = calls
        self.made: list[_Call] = []
        self.generate = self

    def options(self, **options: Any) -> _Handle:
        assert options == {"stream": True}
        return self

    def remote(self, request: ReplicaRequest) -> _Call:
        call = self.calls.pop(0)
        self.made.append(call)
        return call


HEADER = encode_message(
    ReplicaHeader(replica="r1", pid=1, node="n", ongoing=1, served=1, cancelled=0, generated_tokens=0)
)


def piece(text: str, tokens: int) -> bytes:
    chunk = msgspec.convert(
        {"id": "c", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"content": text}}]},
        ChatCompletionChunk,
    )
    return encode_message(ChatPiece(chunk, tokens))


async def collect(engine: RayEngine) -> tuple[list[str], int]:
    generation = engine.prepare_chat(chat_request(4), request_id="chatcmpl-x", created=1)
    texts = [chunk.choices[0].delta.content async for chunk in generation.stream()]
    return [text for text in texts if isinstance(text, str)], generation.completion_tokens


async def test_a_replica_lost_before_any_output_is_retried_on_another(engine: LlamaCppEngine) -> None:
    load = DeploymentLoad()
    handle = _Handle(
        [
            _Call([exceptions.ActorDiedError()]),
            _Call([HEADER, exceptions.ActorUnavailableError("gone", None)]),
            _Call([HEADER, piece("Hi", 1), piece("!", 2)]),
        ]
    )
    texts, tokens = await collect(RayEngine(handle, engine, load=load, retry_backoff=0))
    assert texts == ["Hi", "!"] and tokens == 2
    assert load.retries == 2 and load.in_flight() == {"r1": 0}


async def test_a_replica_lost_after_output_fails_the_stream(engine: LlamaCppEngine) -> None:
    load = DeploymentLoad()
    handle = _Handle([_Call([HEADER, piece("Hi", 1), exceptions.ActorDiedError()]), _Call([HEADER])])
    generation = RayEngine(handle, engine, load=load, retry_backoff=0).prepare_chat(
        chat_request(4), request_id="chatcmpl-x", created=1
    )
    seen = []
    with pytest.raises(EngineError, match="replica r1 failed"):
        async for chunk in generation.stream():
            seen.append(chunk)
    assert len(seen) == 1 and len(handle.made) == 1
    assert load.replica_failures == 1 and load.retries == 0


async def test_a_request_error_is_not_retried_and_closing_cancels_the_call(engine: LlamaCppEngine) -> None:
    handle = _Handle([_Call([ValueError("bad request")]), _Call([HEADER])])
    with pytest.raises(EngineError):
        await collect(RayEngine(handle, engine, retry_backoff=0))
    assert len(handle.made) == 1

    handle = _Handle([_Call([HEADER, piece("a", 1), piece("b", 2)])])
    generation = RayEngine(handle, engine).prepare_chat(chat_request(4), request_id="x", created=1)
    await anext(aiter(generation.stream()))
    await generation.aclose()
    assert handle.made[0].was_cancelled


class _Replica:
    """What the router reads of Ray Serve's ``RunningReplica``: its id."""

    def __init__(self, name: str) -> None:
        self.replica_id = type("ReplicaID", (), {"unique_id": name})()


class _QueueLengths(dict[str, int]):
    def get(self, replica_id: Any, default: Any = None) -> Any:
        return super().get(replica_id.unique_id, default)


def affinity_router(queue_lengths: dict[str, int]) -> Any:
    """The router's own logic; Ray Serve's constructor (which needs a running deployment) is skipped."""
    from chunkwise.ray._router import PrefixAffinityRouter

    router = object.__new__(PrefixAffinityRouter)
    router._replica_queue_len_cache = _QueueLengths(queue_lengths)
    router.initialize_state(imbalance=2)
    return router


def routed(prompt: str) -> Any:
    return type("Pending", (), {"args": [ReplicaRequest("chat", b"{}", "x", 1, prompt=prompt)]})()


async def test_prefix_affinity_keeps_prefixes_apart_and_on_their_replica_until_it_is_busier() -> None:
    replicas = [_Replica("a"), _Replica("b")]
    router = affinity_router({"a": 0, "b": 0})

    async def first_choice(prompt: str) -> str:
        ranks = await router.choose_replicas(replicas, routed(prompt))
        return str(ranks[0][0].replica_id.unique_id)

    alpha, bravo = await first_choice("System Alpha. Q1"), await first_choice("System Bravo. Q1")
    assert alpha != bravo
    for _ in range(3):
        assert await first_choice("System Alpha. Q1") == alpha
        assert await first_choice("System Bravo. Q1") == bravo
    router._replica_queue_len_cache[alpha] = 2  # two requests busier than the other: load wins over affinity
    ranks = await router.choose_replicas(replicas, routed("System Alpha. Q1"))
    assert ranks[0][0].replica_id.unique_id == bravo and ranks[-1][0].replica_id.unique_id == alpha
    # A request without a prompt, or a router error, still gets replicas.
    assert len((await router.choose_replicas(replicas, None))[0]) == 2
    router._owners = None
    assert len((await router.choose_replicas(replicas, routed("x")))[0]) == 2


def test_admission_runs_up_to_capacity_then_queues_then_refuses() -> None:
    from chunkwise.ray._admission import DeploymentAdmission
    from chunkwise.server import Admission, QueueFullError, Scheduler

    replicas = [2]
    admission = DeploymentAdmission(lambda: replicas[0], 1, retry_after=3)
    assert isinstance(admission, Admission) and not isinstance(admission, Scheduler)
    assert (admission.capacity, admission.running) == (2, 0)
    first, second, third = admission.admit(), admission.admit(weight=4), admission.admit()
    assert first.granted and second.granted and third.waiting
    # Counted in requests, whatever their n: the replicas' engines admit the sequences.
    assert (admission.running, admission.queue_depth) == (2, 1) and admission.busy
    replicas[0] = 3  # the deployment scaled up: capacity follows it
    assert admission.capacity == 3
    with pytest.raises(QueueFullError):
        admission.admit()
    second.release()
    assert third.granted and admission.queue_depth == 0
    third.release()
    first.release()
    assert not admission.busy and admission.admit().granted
