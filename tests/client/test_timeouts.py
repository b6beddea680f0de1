"""The four deadlines, on a real socket for both clients, and their bookkeeping on a fake clock."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

import chunkwise
from chunkwise.client._timeouts import Deadlines, Timeouts

from .fault_server import FaultServer
from .harness import KINDS, Kind, run

#: Short windows so that the tests are quick; generous enough for a loaded CI machine.
SHORT = Timeouts(connect=2, first_chunk=0.3, idle=0.3)
#: A deadline fired rather than hung if the call ended by then. The scenarios it applies to never end by
#: themselves (or, for ``slow_first_byte``, only after 3 s), so this bound can leave a loaded machine seconds
#: of slack without letting a missed deadline pass.
FIRED_BY = 2.5


@pytest.mark.parametrize("kind", KINDS)
def test_keepalives_do_not_reset_the_idle_timer(fault_server: FaultServer, kind: Kind) -> None:
    # One chunk, then a keep-alive comment every 20 ms: bytes keep flowing, chunks do not.
    outcome = run(kind, fault_server.base_url("keepalive_after_first"), timeout=SHORT)

    error = outcome.error
    assert isinstance(error, chunkwise.IdleTimeoutError)
    assert isinstance(error, chunkwise.APITimeoutError)
    assert error.deadline == "idle" and error.seconds == 0.3
    assert error.request_id == "req-1"
    assert len(outcome.chunks) == 1
    assert 0.3 <= outcome.seconds < FIRED_BY


@pytest.mark.parametrize("kind", KINDS)
def test_keepalives_only_hit_the_first_chunk_deadline(fault_server: FaultServer, kind: Kind) -> None:
    outcome = run(kind, fault_server.base_url("keepalive_only"), timeout=SHORT)

    assert isinstance(outcome.error, chunkwise.FirstChunkTimeoutError)
    assert outcome.error.deadline == "first_chunk"
    assert 0.3 <= outcome.seconds < FIRED_BY


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["chunks", "unstreamed"])
def test_slow_first_byte(fault_server: FaultServer, kind: Kind, how: str) -> None:
    # The server sends nothing, not even headers, for 3 s.
    outcome = run(kind, fault_server.base_url("slow_first_byte"), how=how, timeout=SHORT)  # type: ignore[arg-type]

    assert isinstance(outcome.error, chunkwise.FirstChunkTimeoutError)
    assert outcome.error.request_id is None  # no response, so no id
    assert outcome.seconds < FIRED_BY


@pytest.mark.parametrize("kind", KINDS)
def test_silent_connection_hits_the_idle_deadline(fault_server: FaultServer, kind: Kind) -> None:
    outcome = run(kind, fault_server.base_url("silent_after_first"), timeout=Timeouts(first_chunk=0.3, idle=0.5))

    assert isinstance(outcome.error, chunkwise.IdleTimeoutError)
    assert 0.5 <= outcome.seconds < FIRED_BY


@pytest.mark.parametrize("kind", KINDS)
def test_total_deadline_while_chunks_keep_coming(fault_server: FaultServer, kind: Kind) -> None:
    outcome = run(kind, fault_server.base_url("endless"), timeout=Timeouts(total=0.4))

    assert isinstance(outcome.error, chunkwise.TotalTimeoutError)
    assert outcome.error.deadline == "total"
    assert len(outcome.chunks) > 5
    assert 0.4 <= outcome.seconds < FIRED_BY


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("timeout", "error"),
    [(Timeouts(first_chunk=0.3), chunkwise.FirstChunkTimeoutError), (Timeouts(total=0.3), chunkwise.TotalTimeoutError)],
)
def test_a_dripping_answer_meets_the_deadline(
    fault_server: FaultServer, kind: Kind, timeout: Timeouts, error: type[chunkwise.APITimeoutError]
) -> None:
    # A byte every 20 ms: no read waits long, but the whole answer takes seconds.
    outcome = run(kind, fault_server.base_url("drip"), how="unstreamed", timeout=timeout)

    assert isinstance(outcome.error, error)
    assert 0.3 <= outcome.seconds < FIRED_BY


@pytest.mark.parametrize("kind", KINDS)
def test_per_call_timeout_overrides_the_client(fault_server: FaultServer, kind: Kind) -> None:
    outcome = run(kind, fault_server.base_url("keepalive_only"), client={"timeout": 30}, timeout=SHORT)

    assert isinstance(outcome.error, chunkwise.FirstChunkTimeoutError)
    assert outcome.seconds < FIRED_BY


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A port whose listen queue is full, so that a new connection attempt hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for sock in [*fillers, listener]:
        sock.close()


@pytest.mark.parametrize("kind", KINDS)
def test_connect_timeout_is_its_own_error(unaccepting_port: int, kind: Kind) -> None:
    timeout = Timeouts(connect=0.3)
    outcome = run(kind, f"http://127.0.0.1:{unaccepting_port}/v1", client={"max_retries": 0}, timeout=timeout)

    assert isinstance(outcome.error, chunkwise.ConnectTimeoutError)
    assert outcome.error.deadline == "connect"
    assert outcome.seconds < FIRED_BY


def test_timeouts_coerce() -> None:
    assert Timeouts.coerce(5) == Timeouts(connect=5, first_chunk=5, idle=5, total=None)
    assert Timeouts.coerce(None) == Timeouts(connect=None, first_chunk=None, idle=None, total=None)
    timeouts = Timeouts(idle=3)
    assert Timeouts.coerce(timeouts) is timeouts


# --- the bookkeeping on a fake clock -------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_chunk_then_idle_then_total() -> None:
    clock = FakeClock()
    deadlines = Deadlines(Timeouts(first_chunk=10, idle=2, total=30), streaming=True, clock=clock)
    deadlines.start_attempt()

    assert deadlines.seconds_left() == 10
    clock.now += 9
    assert deadlines.passed(clock.now) is None
    clock.now += 1
    assert isinstance(deadlines.passed(clock.now), chunkwise.FirstChunkTimeoutError)

    deadlines.chunk_arrived(clock.now)  # at 110
    assert deadlines.seconds_left() == 2
    clock.now += 2
    assert isinstance(deadlines.passed(clock.now), chunkwise.IdleTimeoutError)

    for _ in range(18):  # chunks keep arriving every second until the total deadline at 130
        deadlines.chunk_arrived(clock.now)
        clock.now += 1
    assert deadlines.seconds_left() == 0
    assert isinstance(deadlines.passed(clock.now), chunkwise.TotalTimeoutError)


def test_a_retry_restarts_the_first_chunk_clock_but_not_the_total() -> None:
    clock = FakeClock()
    deadlines = Deadlines(Timeouts(first_chunk=10, total=15), streaming=True, clock=clock)
    deadlines.start_attempt()
    clock.now += 8
    deadlines.start_attempt()
    assert deadlines.seconds_left() == 7  # the total deadline is nearer now
    assert deadlines.allows_wait(6.9) and not deadlines.allows_wait(7)


def test_read_timeout_never_fires_before_a_deadline() -> None:
    clock = FakeClock()
    deadlines = Deadlines(Timeouts(first_chunk=10, idle=30), streaming=True, clock=clock)
    deadlines.start_attempt()
    # Headers: only the first-chunk window applies.
    assert deadlines.read_timeout() == 10
    # The body spans the first chunk and the idle windows after it: the larger one is safe.
    deadlines.headers_arrived()
    clock.now += 4
    assert deadlines.read_timeout() == 30
    deadlines.chunk_arrived(clock.now)
    assert deadlines.read_timeout() == 30
    # What httpx stores up front is good for the whole response.
    fresh = Deadlines(Timeouts(first_chunk=10, idle=30), streaming=True, clock=clock)
    fresh.start_attempt()
    stored = fresh.transport_timeouts()
    assert dict(stored)["read"] == 30 and stored.get("read") == 10


def test_unstreamed_read_timeout_is_the_response_deadline() -> None:
    clock = FakeClock()
    deadlines = Deadlines(Timeouts(first_chunk=10, idle=1, total=5), streaming=False, clock=clock)
    deadlines.start_attempt()
    deadlines.headers_arrived()
    assert deadlines.read_timeout() == 5
    assert dict(deadlines.transport_timeouts()) == {"connect": 5.0, "read": 5, "write": 5, "pool": 5.0}


def test_connect_error_names_the_binding_deadline() -> None:
    connect_only = Deadlines(Timeouts(connect=5), streaming=True, clock=FakeClock())
    assert isinstance(connect_only.connect_expired(), chunkwise.ConnectTimeoutError)
    total_nearer = Deadlines(Timeouts(connect=5, total=2), streaming=True, clock=FakeClock())
    assert isinstance(total_nearer.connect_expired(), chunkwise.TotalTimeoutError)


def test_no_deadlines_no_limits() -> None:
    deadlines = Deadlines(Timeouts.coerce(None), streaming=True)
    deadlines.start_attempt()
    assert deadlines.seconds_left() is None
    assert deadlines.read_timeout() is None
    assert deadlines.passed(deadlines.now() + 1e9) is None
