"""The store behind the gateway, the same tests on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chunkwise.gateway import DatabaseConfig, Store, UsageRow, open_store
from tests.server.conftest import MODEL, RunningServer

from .conftest import create_key, make_config, run_gateway, with_store


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    url: str = request.getfixturevalue("postgres_url")
    yield url
    # One cluster serves the session: leave it empty for the next test.
    asyncio.run(_drop_tables(url))


async def _drop_tables(url: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("DROP TABLE IF EXISTS gateway_usage, gateway_keys")


def run(url: str, action: Callable[[Store], Coroutine[Any, Any, None]]) -> None:
    async def go() -> None:
        store = await open_store(DatabaseConfig(url))
        try:
            await action(store)
        finally:
            await store.close()

    asyncio.run(go())


def usage_row(key_id: str, *, reserve: int, admit_window: int, tokens: tuple[int, int] = (3, 4)) -> UsageRow:
    return UsageRow(
        key_id=key_id,
        model=MODEL,
        upstream="a",
        started_at=time.time(),
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        ttft_ms=1.5,
        duration_ms=2.5,
        status=200,
        outcome="ok",
        cancelled=False,
        reserve=reserve,
        admit_window=admit_window,
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
        await store.record([usage_row(record.id, reserve=10, admit_window=first.window)])
        key = await store.get_key(record.id)
        assert key is not None and (key.tokens_used, key.reserved_tokens) == (7, 0)
        assert await store.admit(secret, MODEL, 0, now) is not None
        assert await store.admit(secret, MODEL, 0, now) is None  # rpm 2
        # The next window starts empty.
        assert await store.admit(secret, MODEL, 0, now + store.window) is not None
        [row] = await store.usage_rows()
        assert row["key_id"] == record.id and row["prompt_tokens"] == 3 and row["cancelled"] is False
        [summary] = await store.usage_summary()
        assert (summary.requests, summary.prompt_tokens, summary.completion_tokens) == (1, 3, 4)
        assert await store.usage_summary(time.time() + 10) == []
        assert await store.revoke_key(record.id) == 1
        assert await store.admit(secret, MODEL, 0, now + store.window) is None
        assert await store.revoke_key(record.id) == 0

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
        asyncio.run(_drop_tables(postgres_url))
