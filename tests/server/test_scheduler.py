"""The scheduler on its own: one holder, a bounded FIFO queue, immediate hand-over, cancellation-safe waits."""

from __future__ import annotations

import anyio
import pytest

from chunkwise.server._errors import QueueFullError
from chunkwise.server._scheduler import Scheduler


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
