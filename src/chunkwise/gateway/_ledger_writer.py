"""Recording each finished request: its metrics at once, its ledger row in batches off the request's path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ._ledger import Admitted, Store, UsageRow
from ._metrics import GatewayMetrics
from ._routing import Upstream

__all__ = ["LedgerWriter"]

logger = logging.getLogger("chunkwise.gateway")

_LEDGER_BATCH = 500
_LEDGER_DELAY = 0.05


class LedgerWriter:
    """:meth:`record` counts a request in the metrics and queues its row; a task writes the rows in batches."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._queue: asyncio.Queue[UsageRow] = asyncio.Queue()
        self._store: Store | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, store: Store) -> None:
        self._store = store
        self._task = asyncio.create_task(self._write())

    async def stop(self) -> None:
        """Writes every queued row (waiting a bounded time), then stops the writer."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=10)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def flush(self) -> None:
        """Waits until every finished request's row is in the database."""
        await self._queue.join()

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

    def record(
        self,
        admitted: Admitted,
        model: str,
        upstream: Upstream | None,
        *,
        started_at: float,
        arrived: float,
        status: int,
        outcome: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        ttft: float | None = None,
        cancelled: bool = False,
    ) -> None:
        metrics = self._metrics
        upstream_name = upstream.name if upstream is not None else ""
        metrics.requests.labels(upstream_name, model, admitted.key_name, str(status)).inc()
        if prompt_tokens:
            metrics.tokens.labels(upstream_name, model, admitted.key_name, "prompt").inc(prompt_tokens)
        if completion_tokens:
            metrics.tokens.labels(upstream_name, model, admitted.key_name, "completion").inc(completion_tokens)
        if ttft is not None:
            metrics.time_to_first_token.labels(upstream_name, model).observe(ttft)
        self._queue.put_nowait(
            UsageRow(
                key_id=admitted.key_id,
                model=model,
                upstream=upstream.name if upstream is not None else None,
                started_at=started_at,
                prompt_tokens=prompt_tokens,
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
