"""Recording requests: metrics at once, ledger writes in batches off the request's path.

Every admitted request has a ledger row from the start (``Store.admit`` opens it). While it runs, the
writer brings the rows of all running requests up to date once per progress interval, in one transaction:
tokens delivered so far, and a fresh ``updated_at`` that says the request is alive. When it ends, its final
row is queued and written with others that ended close to it. Periodically (and at start-up) the writer
also reconciles the rows that nobody has updated for :data:`STALE_INTERVALS` intervals, the requests of a
gateway that died, and prunes rows past the retention time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from ._ledger import Admitted, Progress, Store, UsageRow
from ._metrics import GatewayMetrics
from ._routing import Upstream

if TYPE_CHECKING:
    from ._admission import AdmittedRequest

__all__ = ["STALE_INTERVALS", "Billed", "LedgerWriter"]

logger = logging.getLogger("chunkwise.gateway")

_LEDGER_BATCH = 500
_LEDGER_DELAY = 0.05
#: A running request's row not updated for this many progress intervals belongs to a gateway that died.
STALE_INTERVALS = 5


class Billed(NamedTuple):
    """The tokens a request is billed for (so far)."""

    prompt_tokens: int = 0
    #: The prompt tokens are the gateway's own estimate: the upstream reported no usage.
    prompt_estimated: bool = False
    completion_tokens: int = 0


#: Where a running request stands.
ProgressSource = Callable[[], Billed]


class LedgerWriter:
    """:meth:`record` counts a request in the metrics and queues its row; tasks write rows and progress."""

    def __init__(self, metrics: GatewayMetrics, *, progress_interval: float = 1.0, retention: float = 0.0) -> None:
        self._metrics = metrics
        self._interval = max(progress_interval, 0.01)
        self._retention = retention
        self._queue: asyncio.Queue[UsageRow] = asyncio.Queue()
        self._running: dict[int, ProgressSource] = {}
        self._store: Store | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, store: Store) -> None:
        self._store = store
        await self._reconcile()
        self._tasks = [asyncio.create_task(self._write()), asyncio.create_task(self._keep_books())]

    async def stop(self) -> None:
        """Writes every queued row (waiting a bounded time), then stops the writer."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=10)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def flush(self) -> None:
        """Waits until every finished request's row is in the database."""
        await self._queue.join()

    def running(self, admitted: Admitted, progress: ProgressSource | None = None) -> None:
        """Keeps ``admitted``'s row up to date from ``progress`` (or just alive) until it is recorded."""
        estimate = admitted.prompt_estimate
        self._running[admitted.usage_id] = progress or (lambda: Billed(estimate, True, 0))

    def is_running(self, admitted: Admitted) -> bool:
        """Whether ``admitted`` has not been recorded yet."""
        return admitted.usage_id in self._running

    async def _write(self) -> None:
        assert self._store is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            # Rows that finish close together share one transaction: under load that is one commit for many
            # requests. Their reservations keep holding their tokens until then, so no limit is overrun.
            await asyncio.sleep(_LEDGER_DELAY)
            while len(batch) < _LEDGER_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._store.record(batch)
            except Exception:
                logger.exception("could not write %d usage rows", len(batch))
            finally:
                for _ in batch:
                    queue.task_done()

    async def _keep_books(self) -> None:
        """Every interval: the running requests' progress; every few: reconciliation and retention."""
        assert self._store is not None
        ticks = 0
        while True:
            await asyncio.sleep(self._interval)
            ticks += 1
            updates = [Progress(usage_id, *source()) for usage_id, source in list(self._running.items())]
            try:
                await self._store.progress(updates)
                if ticks % STALE_INTERVALS == 0:
                    await self._reconcile()
            except Exception:
                logger.exception("could not bring the ledger up to date")

    async def _reconcile(self) -> None:
        assert self._store is not None
        settled = await self._store.reconcile(STALE_INTERVALS * self._interval)
        if settled:
            logger.warning("settled %d ledger rows of requests whose gateway stopped (billed their progress)", settled)
        if self._retention > 0:
            await self._store.prune_usage(time.time() - self._retention)

    def record(
        self,
        request: AdmittedRequest,
        upstream: Upstream | None,
        *,
        arrived: float,
        status: int,
        outcome: str,
        billed: Billed = Billed(),  # noqa: B008 (an immutable tuple)
        ttft: float | None = None,
        cancelled: bool = False,
    ) -> None:
        admitted, model = request.admitted, request.label
        self._running.pop(admitted.usage_id, None)
        metrics = self._metrics
        upstream_name = upstream.name if upstream is not None else ""
        metrics.child(metrics.requests, upstream_name, model, admitted.key_name, str(status)).inc()
        prompt_tokens, prompt_estimated, completion_tokens = billed
        if prompt_tokens:
            metrics.child(metrics.tokens, upstream_name, model, admitted.key_name, "prompt").inc(prompt_tokens)
        if completion_tokens:
            metrics.child(metrics.tokens, upstream_name, model, admitted.key_name, "completion").inc(completion_tokens)
        if ttft is not None:
            metrics.child(metrics.time_to_first_token, upstream_name, model).observe(ttft)
        self._queue.put_nowait(
            UsageRow(
                usage_id=admitted.usage_id,
                key_id=admitted.key_id,
                model=model,
                upstream=upstream.name if upstream is not None else None,
                started_at=request.started_at,
                prompt_tokens=prompt_tokens,
                prompt_estimated=prompt_estimated,
                completion_tokens=completion_tokens,
                ttft_ms=None if ttft is None else ttft * 1000.0,
                duration_ms=(time.perf_counter() - arrived) * 1000.0,
                status=status,
                outcome=outcome,
                cancelled=cancelled,
                reserve=admitted.reserve,
                admit_window=admitted.window,
            )
        )
