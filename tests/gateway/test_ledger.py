"""The store behind the gateway, the same tests on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

from chunkwise.gateway import DatabaseConfig, Store, UsageRow, open_store
from chunkwise.gateway._ledger import Admitted, Progress
from tests.server.conftest import MODEL, RunningServer

from .conftest import create_key, drop_tables, make_config, run_gateway, with_store


def run(url: str, action: Callable[[Store], Coroutine[Any, Any, None]]) -> None:
    async def go() -> None:
        store = await open_store(DatabaseConfig(url))
        try:
            await action(store)
        finally:
            await store.close()

    asyncio.run(go())


def usage_row(admitted: Admitted, *, tokens: tuple[int, int] = (3, 4), outcome: str = "ok") -> UsageRow:
    return UsageRow(
        usage_id=admitted.usage_id,
        key_id=admitted.key_id,
        model=MODEL,
        upstream="a",
        started_at=time.time(),
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        ttft_ms=1.5,
        duration_ms=2.5,
        status=200,
        outcome=outcome,
        cancelled=False,
        reserve=admitted.reserve,
        admit_window=admitted.window,
    )


def test_keys_admission_and_settlement(database_url: str) -> None:
    async def scenario(store: Store) -> None:
        record, secret = await store.create_key("k", models=[MODEL], rpm=2, tpm=100, budget_tokens=30)
        assert record.models == (MODEL,) and record.rpm == 2 and record.tokens_used == 0
        assert (await store.find_key(secret)) == record
        assert await store.admit("cwk-wrong", MODEL, 0, time.time()) is None
        assert await store.admit(secret, "other-model", 0, time.time()) is None
        now = time.time()
        first = await store.admit(secret, MODEL, 10, now)
        assert first is not None and first.key_id == record.id and first.reserve == 10
        key = await store.get_key(record.id)
        assert key is not None and (key.reserved_tokens, key.window_requests, key.window_tokens) == (10, 1, 10)
        await store.record([usage_row(first)])
        key = await store.get_key(record.id)
        assert key is not None and (key.tokens_used, key.reserved_tokens) == (7, 0)
        assert await store.admit(secret, MODEL, 0, now) is not None
        assert await store.admit(secret, MODEL, 0, now) is None  # rpm 2
        # The next window starts empty.
        assert await store.admit(secret, MODEL, 0, now + store.window) is not None
        row, *running = await store.usage_rows()
        assert row["key_id"] == record.id and row["prompt_tokens"] == 3 and row["cancelled"] is False
        assert [other["outcome"] for other in running] == ["open", "open"]  # opened at admission
        [summary] = await store.usage_summary()
        assert (summary.requests, summary.prompt_tokens, summary.completion_tokens, summary.failed) == (3, 3, 4, 0)
        assert await store.usage_summary(time.time() + 2 * store.window) == []
        assert await store.revoke_key(record.id) == 1
        assert await store.admit(secret, MODEL, 0, now + store.window) is None
        assert await store.revoke_key(record.id) == 0

    run(database_url, scenario)


def test_a_row_opened_at_admission_is_settled_once_and_reconciled_when_its_gateway_died(database_url: str) -> None:
    async def scenario(store: Store) -> None:
        record, secret = await store.create_key("k", budget_tokens=100)
        assert await store.admit(secret, MODEL, 101, time.time()) is None  # used + reserved + this > budget
        finished = await store.admit(secret, MODEL, 40, time.time(), prompt_estimate=12)
        crashed = await store.admit(secret, MODEL, 40, time.time(), prompt_estimate=12)
        assert finished is not None and crashed is not None
        assert await store.admit(secret, MODEL, 40, time.time()) is None  # 80 reserved: 40 more would pass 100
        [opened, _] = await store.usage_rows()
        assert opened["outcome"] == "open" and opened["prompt_tokens"] == 12 and opened["prompt_estimated"]
        assert await store.record([usage_row(finished)]) == 1
        assert await store.record([usage_row(finished, tokens=(50, 50))]) == 0  # settled already
        await store.progress([Progress(crashed.usage_id, 12, True, 5)])
        assert await store.reconcile(stale_after=60.0) == 0  # updated just now: alive
        assert await store.reconcile(stale_after=0.0, now=time.time() + 1) == 1
        assert await store.record([usage_row(crashed)]) == 0  # the reconciled row stays as it was settled
        key = await store.get_key(record.id)
        assert key is not None and (key.tokens_used, key.reserved_tokens) == (7 + 17, 0)
        interrupted = (await store.usage_rows())[1]
        assert interrupted["outcome"] == "interrupted" and interrupted["completion_tokens"] == 5
        assert interrupted["prompt_tokens"] == 12 and interrupted["prompt_estimated"]

    run(database_url, scenario)


def test_concurrent_admissions_never_over_admit(database_url: str) -> None:
    async def scenario(store: Store) -> None:
        _, secret = await store.create_key("burst", rpm=7)
        now = time.time()
        # Several stores (connections, as several gateways have) racing for one key.
        others = [await open_store(DatabaseConfig(database_url)) for _ in range(3)]
        try:
            stores = [store, *others]
            results = await asyncio.gather(*(stores[i % 4].admit(secret, MODEL, 0, now) for i in range(40)))
        finally:
            for other in others:
                await other.close()
        assert sum(result is not None for result in results) == 7

    run(database_url, scenario)


def test_two_gateways_sharing_postgresql_share_limits_and_ledger(
    upstream: RunningServer, postgres_url: str, tmp_path: Path
) -> None:
    config = make_config(postgres_url, [("a", f"{upstream.url}/v1", [MODEL])])
    try:
        key = create_key(config, "shared", rpm=4)
        with run_gateway(config) as first, run_gateway(config) as second:

            async def burst() -> list[int]:
                async with httpx.AsyncClient(timeout=120) as client:
                    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
                    responses = await asyncio.gather(
                        *(
                            client.post(
                                f"{gateway.url}/v1/chat/completions",
                                json=body,
                                headers={"authorization": f"Bearer {key}"},
                            )
                            for gateway in [first, second] * 6
                        )
                    )
                return sorted(response.status_code for response in responses)

            assert asyncio.run(burst()) == [200] * 4 + [429] * 8
            rows = first.usage_rows(4)
        assert len(rows) == 4 and all(row["status"] == 200 and row["completion_tokens"] == 1 for row in rows)
        [record] = with_store(config, lambda store: store.list_keys())
        assert record.tokens_used == sum(row["prompt_tokens"] + row["completion_tokens"] for row in rows)
    finally:
        asyncio.run(drop_tables(postgres_url))


def test_sqlite_calls_leave_the_event_loop_free_while_the_database_is_locked(tmp_path: Path) -> None:
    # Another process holding the write lock (a CLI command, a second gateway) makes SQLite wait; the wait
    # must not stop every other request's I/O on the gateway's event loop.
    import sqlite3

    url = f"sqlite:///{tmp_path / 'locked.db'}"

    async def scenario(store: Store) -> None:
        _, secret = await store.create_key("k")
        holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        admission = asyncio.create_task(store.admit(secret, MODEL, 1, time.time()))
        await asyncio.sleep(0.5)
        assert ticks >= 20, "the event loop stood still while SQLite waited for its lock"
        holder.execute("COMMIT")
        holder.close()
        assert await admission is not None
        ticker.cancel()

    run(url, scenario)


def test_sqlite_admission_without_contention_takes_no_turn_of_the_event_loop(tmp_path: Path) -> None:
    # Every request is admitted on its way to the first token: a hop to the worker thread and back would
    # cost it a thread wake-up and a turn of the loop, more than the admission's own few statements.
    async def scenario(store: Store) -> None:
        _, secret = await store.create_key("k")
        turned = False

        async def mark_turn() -> None:
            nonlocal turned
            turned = True

        marker = asyncio.create_task(mark_turn())
        admitted = await store.admit(secret, MODEL, 1, time.time())
        assert admitted is not None
        assert not turned, "the admission gave the event loop a turn (it waited on another thread)"
        await marker

    run(f"sqlite:///{tmp_path / 'inline.db'}", scenario)
