"""Retries: what is retried, how long the client waits, and that a stream with data never is."""

from __future__ import annotations

import random
from email.utils import formatdate

import httpx
import pytest

import chunkwise
from chunkwise.client._retries import Backoff, RetryState, is_retryable, server_retry_delay
from chunkwise.client._timeouts import Deadlines, Timeouts

from .fault_server import WORDS, FaultServer
from .harness import KINDS, Kind, run

FAST = {"backoff": chunkwise.Backoff(initial=0.01, maximum=0.02)}


@pytest.mark.parametrize("kind", KINDS)
def test_429_with_retry_after_seconds_then_success(fault_server: FaultServer, kind: Kind) -> None:
    base_url = fault_server.base_url("retry_after_seconds")
    outcome = run(kind, base_url)

    assert outcome.error is None
    assert outcome.completion is not None and outcome.completion.choices[0].message.content == "".join(WORDS)
    assert len(fault_server.state(base_url).requests) == 2
    assert outcome.seconds >= 0.95


@pytest.mark.parametrize("kind", KINDS)
def test_429_with_retry_after_ms(fault_server: FaultServer, kind: Kind) -> None:
    base_url = fault_server.base_url("retry_after_ms")
    outcome = run(kind, base_url)

    assert outcome.error is None
    assert len(fault_server.state(base_url).requests) == 2
    assert 0.19 <= outcome.seconds < 0.9


def test_429_with_retry_after_http_date(fault_server: FaultServer) -> None:
    base_url = fault_server.base_url("retry_after_date")
    outcome = run("sync", base_url)

    assert outcome.error is None
    assert len(fault_server.state(base_url).requests) == 2
    # The date is 2 s ahead at one-second resolution.
    assert 0.9 <= outcome.seconds < 3.5


@pytest.mark.parametrize("kind", KINDS)
def test_retry_after_beyond_the_limit_is_not_retried(fault_server: FaultServer, kind: Kind) -> None:
    base_url = fault_server.base_url("retry_after_hour")
    outcome = run(kind, base_url)

    assert isinstance(outcome.error, chunkwise.RateLimitError)
    assert outcome.error.error is not None and outcome.error.error.code == "TOO_MANY_REQUESTS"
    assert len(fault_server.state(base_url).requests) == 1
    assert outcome.seconds < 1


@pytest.mark.parametrize("kind", KINDS)
def test_503_text_body_then_success(fault_server: FaultServer, kind: Kind) -> None:
    base_url = fault_server.base_url("unavailable_then_ok")
    outcome = run(kind, base_url)

    assert outcome.error is None
    assert len(fault_server.state(base_url).requests) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_unstreamed_request_is_retried_too(fault_server: FaultServer, kind: Kind) -> None:
    base_url = fault_server.base_url("unavailable_then_ok")
    outcome = run(kind, base_url, how="unstreamed")

    assert outcome.completion is not None
    assert len(fault_server.state(base_url).requests) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_connection_reset_before_the_first_chunk_is_retried(fault_server: FaultServer, kind: Kind) -> None:
    base_url = fault_server.base_url("reset_twice")
    outcome = run(kind, base_url, client=FAST)

    assert outcome.error is None and len(outcome.chunks) == 7
    assert len(fault_server.state(base_url).requests) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_retries_end_at_max_retries(fault_server: FaultServer, kind: Kind) -> None:
    base_url = fault_server.base_url("reset_always")
    outcome = run(kind, base_url, client={**FAST, "max_retries": 3})

    assert type(outcome.error) is chunkwise.APIConnectionError
    assert len(fault_server.state(base_url).requests) == 4


@pytest.mark.parametrize("kind", KINDS)
def test_per_call_max_retries_overrides_the_client(fault_server: FaultServer, kind: Kind) -> None:
    base_url = fault_server.base_url("reset_always")
    outcome = run(kind, base_url, client={**FAST, "max_retries": 3}, max_retries=0)

    assert isinstance(outcome.error, chunkwise.APIConnectionError)
    assert len(fault_server.state(base_url).requests) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_client_errors_are_not_retried(fault_server: FaultServer, kind: Kind) -> None:
    base_url = fault_server.base_url("bad_request")
    run(kind, base_url, client=FAST)

    assert len(fault_server.state(base_url).requests) == 1


def test_no_retry_when_the_wait_would_pass_the_total_deadline(fault_server: FaultServer) -> None:
    base_url = fault_server.base_url("retry_after_seconds")
    outcome = run("sync", base_url, timeout=Timeouts(total=0.5))

    assert isinstance(outcome.error, chunkwise.RateLimitError)
    assert len(fault_server.state(base_url).requests) == 1


# --- the decisions, without a server -------------------------------------------------------------


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", "http://test/v1/chat/completions"))


def _status_error(status: int, headers: dict[str, str] | None = None) -> chunkwise.APIStatusError:
    from chunkwise.client._responses import status_error

    return status_error(_response(status, headers))


RETRIED = {400: False, 401: False, 404: False, 408: True, 409: True, 422: False, 429: True, 500: True, 503: True}


@pytest.mark.parametrize(("status", "retried"), RETRIED.items())
def test_retryable_statuses(status: int, retried: bool) -> None:
    assert is_retryable(_status_error(status)) is retried


def test_retryable_connection_errors() -> None:
    assert is_retryable(chunkwise.APIConnectionError("refused"))
    assert is_retryable(chunkwise.ConnectTimeoutError("slow connect", seconds=1))
    # The server had the request: waiting again would repeat the work, not fix the network.
    assert not is_retryable(chunkwise.FirstChunkTimeoutError("slow", seconds=1))
    assert not is_retryable(chunkwise.IdleTimeoutError("stalled", seconds=1))
    assert not is_retryable(chunkwise.TotalTimeoutError("late", seconds=1))


def test_server_retry_delay_forms() -> None:
    assert server_retry_delay(httpx.Headers({"retry-after": "3"})) == 3.0
    assert server_retry_delay(httpx.Headers({"retry-after": "1.5"})) == 1.5
    assert server_retry_delay(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    # retry-after-ms is more precise, so it wins.
    assert server_retry_delay(httpx.Headers({"retry-after-ms": "250", "retry-after": "3"})) == 0.25
    now = 1_700_000_000.0
    date = formatdate(now + 7, usegmt=True)
    assert server_retry_delay(httpx.Headers({"retry-after": date}), now=now) == pytest.approx(7, abs=1)
    assert server_retry_delay(httpx.Headers({"retry-after": formatdate(now - 60, usegmt=True)}), now=now) == 0.0
    assert server_retry_delay(httpx.Headers({"retry-after": "soon"})) is None
    assert server_retry_delay(httpx.Headers({"retry-after": "-5"})) == 0.0
    assert server_retry_delay(httpx.Headers()) is None


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    backoff = Backoff(initial=0.5, maximum=8.0)
    rng = random.Random(1)
    for retry, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)]:
        delays = [backoff.delay(retry, rng) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not constant


def test_retry_state_prefers_the_server_delay_and_counts() -> None:
    deadlines = Deadlines(Timeouts(), streaming=True)
    state = RetryState(2, Backoff(), deadlines, random.Random(0))

    assert state.delay_before_retry(_status_error(429, {"retry-after": "2"}), "POST x") == 2.0
    assert state.delay_before_retry(_status_error(503), "POST x") is not None
    assert state.delay_before_retry(_status_error(503), "POST x") is None  # max_retries reached
    assert state.retries == 2
