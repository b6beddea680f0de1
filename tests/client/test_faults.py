"""A misbehaving server on a real socket: every failure must come out as the right error, on both clients."""

from __future__ import annotations

import httpx
import pytest

import chunkwise
from chunkwise.sse import InvalidChunkError

from .fault_server import FaultServer
from .harness import KINDS, Kind, run


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_stream_is_incomplete(fault_server: FaultServer, kind: Kind) -> None:
    # The body ends cleanly, but before any finish_reason, usage chunk or [DONE].
    outcome = run(kind, fault_server.base_url("truncated"))

    assert isinstance(outcome.error, chunkwise.IncompleteStreamError)
    assert len(outcome.chunks) == 3
    assert outcome.error.chunks_received == 3
    assert outcome.error.partial.choices[0].message.content == "Hello,"
    assert outcome.error.request_id == "req-1"


@pytest.mark.parametrize("kind", KINDS)
def test_connection_closed_mid_body_is_incomplete(fault_server: FaultServer, kind: Kind) -> None:
    outcome = run(kind, fault_server.base_url("cut_short"))

    assert isinstance(outcome.error, chunkwise.IncompleteStreamError)
    assert isinstance(outcome.error.__cause__, httpx.RemoteProtocolError)
    assert len(outcome.chunks) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_connection_reset_mid_stream_is_incomplete_and_not_retried(fault_server: FaultServer, kind: Kind) -> None:
    base_url = fault_server.base_url("data_then_reset_always")
    outcome = run(kind, base_url, client={"backoff": chunkwise.Backoff(initial=0.01)})

    assert isinstance(outcome.error, chunkwise.IncompleteStreamError)
    assert isinstance(outcome.error.__cause__, httpx.ReadError)
    assert len(outcome.chunks) == 3
    assert outcome.error.request_id == "req-1"
    # Data was yielded, so there was no second attempt.
    assert len(fault_server.state(base_url).requests) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_garbage_frame_raises_with_request_id(fault_server: FaultServer, kind: Kind) -> None:
    outcome = run(kind, fault_server.base_url("garbage"))

    assert isinstance(outcome.error, InvalidChunkError)
    assert isinstance(outcome.error, chunkwise.SSEError)
    assert outcome.error.request_id == "req-1"
    assert len(outcome.chunks) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_error_frame_mid_stream(fault_server: FaultServer, kind: Kind) -> None:
    outcome = run(kind, fault_server.base_url("error_mid_stream"))

    error = outcome.error
    assert isinstance(error, chunkwise.StreamError)
    assert str(error) == "engine crashed"
    assert error.error.type == "server_error" and error.error.code == 500
    assert error.request_id == "req-1"
    # The chunks before the error frame were all delivered first.
    assert len(outcome.chunks) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_error_frame_stops_final_completion(fault_server: FaultServer, kind: Kind) -> None:
    outcome = run(kind, fault_server.base_url("error_mid_stream"), how="final")

    assert isinstance(outcome.error, chunkwise.StreamError)
    assert outcome.completion is None


@pytest.mark.parametrize("kind", KINDS)
def test_json_error_with_200_is_an_error(fault_server: FaultServer, kind: Kind) -> None:
    outcome = run(kind, fault_server.base_url("error_json_with_200"))

    error = outcome.error
    assert isinstance(error, chunkwise.UnexpectedResponseError)
    assert error.error is not None and error.error.message == "model is loading"
    assert "application/json" in str(error)
    assert error.request_id == "req-1"


@pytest.mark.parametrize("kind", KINDS)
def test_json_error_with_200_unstreamed_is_an_error(fault_server: FaultServer, kind: Kind) -> None:
    outcome = run(kind, fault_server.base_url("error_json_with_200"), how="unstreamed")

    assert isinstance(outcome.error, chunkwise.UnexpectedResponseError)
    assert outcome.error.error is not None and outcome.error.error.message == "model is loading"


STATUS_CASES = [
    ("bad_request", chunkwise.BadRequestError, 400, "messages: too short"),
    ("unauthorized", chunkwise.AuthenticationError, 401, "Authentication failed"),
    ("not_found", chunkwise.NotFoundError, 404, "Not Found"),
    ("unprocessable", chunkwise.UnprocessableEntityError, 422, "Input validation error: `max_tokens` must be positive"),
    ("server_error_text", chunkwise.InternalServerError, 500, "Internal Server Error"),
    ("teapot", chunkwise.APIStatusError, 418, None),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("scenario", "error_type", "status", "message"), STATUS_CASES)
def test_status_errors(
    fault_server: FaultServer,
    kind: Kind,
    scenario: str,
    error_type: type[chunkwise.APIStatusError],
    status: int,
    message: str | None,
) -> None:
    outcome = run(kind, fault_server.base_url(scenario), max_retries=0)

    error = outcome.error
    assert type(error) is error_type
    assert isinstance(error, chunkwise.APIStatusError)
    assert error.status_code == status
    assert error.request_id == "req-1"
    assert error.response.status_code == status
    if message is None:
        assert error.error is None
    else:
        assert error.error is not None and error.error.message == message
        assert str(error).endswith(message)


def test_status_error_keeps_the_whole_error_body(fault_server: FaultServer) -> None:
    outcome = run("sync", fault_server.base_url("bad_request"))

    assert isinstance(outcome.error, chunkwise.BadRequestError)
    assert outcome.error.error is not None
    assert outcome.error.error.param == "messages"
    assert outcome.error.error.type == "invalid_request_error"


def test_atoma_error_code_is_kept(fault_server: FaultServer) -> None:
    outcome = run("sync", fault_server.base_url("unauthorized"))

    assert isinstance(outcome.error, chunkwise.AuthenticationError)
    assert outcome.error.error is not None and outcome.error.error.code == "AUTH_ERROR"


@pytest.mark.parametrize("kind", KINDS)
def test_unreachable_server_is_a_connection_error(kind: Kind) -> None:
    # Port 9 (discard) is closed on loopback; nothing listens there in CI.
    outcome = run(kind, "http://127.0.0.1:9/v1", client={"max_retries": 1, "backoff": chunkwise.Backoff(initial=0.01)})

    assert type(outcome.error) is chunkwise.APIConnectionError
    assert isinstance(outcome.error.__cause__, httpx.ConnectError)
