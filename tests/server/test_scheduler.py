"""The scheduler on its own: capacity in sequences, a bounded FIFO queue, immediate hand-over, safe waits."""

from __future__ import annotations

import anyio
import pytest

from chunkwise.server import Admission, QueueFullError, Scheduler


@pytest.mark.anyio
async def test_one_holder_then_first_in_first_out() -> None:
    scheduler = Scheduler(2, retry_after=1)
    first, second, third = scheduler.admit(), scheduler.admit(), scheduler.admit()
    assert first.granted and second.waiting and third.waiting
    assert scheduler.queue_depth == 2
    first.release()
    assert second.granted, "the hand-over happens inside release, before anyone else can run"
    assert third.waiting
    assert scheduler.queue_depth == 1
    with anyio.fail_after(1):
        await second.wait()
    second.release()
    third.release()
    assert not scheduler.busy and scheduler.queue_depth == 0
    assert scheduler.admit().granted


@pytest.mark.anyio
async def test_a_full_queue_refuses_with_retry_after() -> None:
    scheduler = Scheduler(1, retry_after=7)
    scheduler.admit()
    scheduler.admit()
    with pytest.raises(QueueFullError) as refused:
        scheduler.admit()
    assert refused.value.status == 429
    assert refused.value.headers == {"Retry-After": "7"}


@pytest.mark.anyio
async def test_queue_size_zero_means_no_waiting() -> None:
    scheduler = Scheduler(0, retry_after=1)
    holder = scheduler.admit()
    with pytest.raises(QueueFullError):
        scheduler.admit()
    holder.release()
    assert scheduler.admit().granted


@pytest.mark.anyio
async def test_a_waiter_that_leaves_frees_its_place_and_keeps_order() -> None:
    scheduler = Scheduler(3, retry_after=1)
    holder, leaving, staying = scheduler.admit(), scheduler.admit(), scheduler.admit()
    with anyio.move_on_after(0.01):
        await leaving.wait()  # a timed-out wait (a keep-alive tick) keeps the place in the queue
    assert leaving.waiting and scheduler.queue_depth == 2
    leaving.release()
    leaving.release()  # twice is harmless
    assert scheduler.queue_depth == 1
    holder.release()
    assert staying.granted


@pytest.mark.anyio
async def test_requests_run_together_up_to_the_capacity_in_sequences_and_wait_in_order() -> None:
    scheduler = Scheduler(queue_size=4, retry_after=1, capacity=4)
    assert isinstance(scheduler, Admission) and scheduler.capacity == 4 and scheduler.running == 0
    pair, single = scheduler.admit(weight=2), scheduler.admit()
    assert pair.granted and single.granted and scheduler.running == 3
    triple, late_single = scheduler.admit(weight=3), scheduler.admit()
    # One sequence is free, but the triple came first: nobody overtakes it.
    assert triple.waiting and late_single.waiting and scheduler.queue_depth == 2
    single.release()
    assert triple.waiting, "3 sequences are needed, 2 are free"
    pair.release()
    assert triple.granted and late_single.granted and scheduler.running == 4
    assert scheduler.admit(weight=9).waiting, "more than the capacity counts as all of it"
