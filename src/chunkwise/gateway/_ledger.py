"""Keys, limits and the usage ledger in one database: SQLite (default) or PostgreSQL, behind one interface.

Both speak the same SQL, written once with ``:name`` parameters. Every statement on the request path is
a single round trip: admission is one ``UPDATE ... WHERE <limits hold> RETURNING``, which the database
runs atomically per key row, so gateways sharing a PostgreSQL database never over-admit together.
Ledger rows are written after the response, in batches, by :class:`~._app` 's writer task; a row also
settles the tokens its request reserved at admission.

PostgreSQL goes through psycopg 3: it is fully typed (mypy --strict), async-native with a well-kept pool
(psycopg_pool), prepares repeated statements on the server by itself, and its binary wheel needs no
compiler. asyncpg is a little faster per query, but untyped and async-only; one query per request does
not make that difference visible next to an HTTP round trip.
"""

from __future__ import annotations

import re
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._config import ConfigError, DatabaseConfig
from ._keys import KeyRecord, generate_key, hash_key, models_tag, parse_models_tag

__all__ = ["Admitted", "Store", "UsageRow", "UsageSummary", "open_store"]

_KEY_COLUMNS = (
    "id, name, models, rpm, tpm, budget_tokens, tokens_used, reserved_tokens, window_start, window_requests, "
    "window_tokens, created_at, revoked_at"
)

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS gateway_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        models TEXT NOT NULL,
        rpm BIGINT,
        tpm BIGINT,
        budget_tokens BIGINT,
        tokens_used BIGINT NOT NULL DEFAULT 0,
        reserved_tokens BIGINT NOT NULL DEFAULT 0,
        window_start BIGINT NOT NULL DEFAULT 0,
        window_requests BIGINT NOT NULL DEFAULT 0,
        window_tokens BIGINT NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    )""",
    """CREATE TABLE IF NOT EXISTS gateway_usage (
        id {serial} PRIMARY KEY,
        key_id TEXT NOT NULL,
        model TEXT NOT NULL,
        upstream TEXT,
        started_at DOUBLE PRECISION NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        ttft_ms DOUBLE PRECISION,
        duration_ms DOUBLE PRECISION NOT NULL,
        status INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        cancelled BOOLEAN NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS gateway_usage_started ON gateway_usage (started_at)",
]

# Counters of the current window; a window that has passed counts as empty.
_IN_WINDOW = "CASE WHEN window_start = :window THEN {column} ELSE 0 END"

_ADMIT = f"""UPDATE gateway_keys SET
        window_requests = {_IN_WINDOW.format(column="window_requests")} + 1,
        window_tokens = {_IN_WINDOW.format(column="window_tokens")} + :reserve,
        window_start = :window,
        reserved_tokens = reserved_tokens + :reserve
    WHERE key_hash = :key_hash AND revoked_at IS NULL
        AND (models = '' OR {{find}}(models, :model_tag) > 0)
        AND (rpm IS NULL OR {_IN_WINDOW.format(column="window_requests")} < rpm)
        AND (tpm IS NULL OR {_IN_WINDOW.format(column="window_tokens")} < tpm)
        AND (budget_tokens IS NULL OR tokens_used + reserved_tokens < budget_tokens)
    RETURNING id, name"""

# A settled request: its real tokens replace its reservation (which counted in the window it was admitted in).
_SETTLE = """UPDATE gateway_keys SET
        tokens_used = tokens_used + :tokens,
        reserved_tokens = reserved_tokens - :reserve,
        window_tokens = CASE WHEN window_start = :window
            THEN window_tokens + :tokens - (CASE WHEN :admit_window = :window THEN :reserve ELSE 0 END)
            ELSE :tokens END,
        window_requests = CASE WHEN window_start = :window THEN window_requests ELSE 0 END,
        window_start = CASE WHEN window_start > :window THEN window_start ELSE :window END
    WHERE id = :key_id"""

_INSERT_USAGE = """INSERT INTO gateway_usage (key_id, model, upstream, started_at, prompt_tokens, completion_tokens,
        ttft_ms, duration_ms, status, outcome, cancelled)
    VALUES (:key_id, :model, :upstream, :started_at, :prompt_tokens, :completion_tokens, :ttft_ms, :duration_ms,
        :status, :outcome, :cancelled)"""

_SUMMARY = """SELECT k.id, k.name, u.model, COUNT(*), SUM(u.prompt_tokens), SUM(u.completion_tokens),
        SUM(CASE WHEN u.status >= 400 OR u.outcome <> 'ok' THEN 1 ELSE 0 END),
        SUM(CASE WHEN u.cancelled THEN 1 ELSE 0 END), AVG(u.ttft_ms)
    FROM gateway_usage u JOIN gateway_keys k ON k.id = u.key_id
    WHERE u.started_at >= :since
    GROUP BY k.id, k.name, u.model ORDER BY k.name, k.id, u.model"""


@dataclass(frozen=True)
class Admitted:
    key_id: str
    key_name: str
    #: The limit window the request was admitted in; settlement needs it.
    window: int
    reserve: int


@dataclass(frozen=True)
class UsageRow:
    """One request in the ledger. ``outcome``: ok, upstream_error, no_upstream, cut_short, cancelled, bad_request."""

    key_id: str
    model: str
    upstream: str | None
    started_at: float
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float | None
    duration_ms: float
    status: int
    outcome: str
    cancelled: bool
    reserve: int
    admit_window: int


@dataclass(frozen=True)
class UsageSummary:
    key_id: str
    key_name: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    failed: int
    cancelled: int
    mean_ttft_ms: float | None


def _key_record(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(
        id=row[0],
        name=row[1],
        models=parse_models_tag(row[2]),
        rpm=row[3],
        tpm=row[4],
        budget_tokens=row[5],
        tokens_used=int(row[6]),
        reserved_tokens=int(row[7]),
        window_start=int(row[8]),
        window_requests=int(row[9]),
        window_tokens=int(row[10]),
        created_at=float(row[11]),
        revoked_at=None if row[12] is None else float(row[12]),
    )


class Store(ABC):
    """Keys, limits and ledger. Every method is a coroutine; the SQLite one just never waits."""

    def __init__(self, window: int = 60) -> None:
        self.window = window

    # --- the dialect: how statements run --------------------------------------------------------------

    @abstractmethod
    async def _fetch_one(self, sql: str, params: dict[str, Any]) -> Sequence[Any] | None: ...

    @abstractmethod
    async def _fetch_all(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]: ...

    @abstractmethod
    async def _run_in_transaction(self, statements: list[tuple[str, dict[str, Any]]]) -> int:
        """Runs every statement in one transaction; returns the rows the last one changed."""

    @abstractmethod
    async def close(self) -> None: ...

    # --- keys ---------------------------------------------------------------------------------------------

    async def create_key(
        self,
        name: str,
        *,
        models: Sequence[str] = (),
        rpm: int | None = None,
        tpm: int | None = None,
        budget_tokens: int | None = None,
    ) -> tuple[KeyRecord, str]:
        """A new key; the secret is returned here and never again."""
        key_id, secret = generate_key()
        params = {
            "id": key_id,
            "name": name,
            "key_hash": hash_key(secret),
            "models": models_tag(list(models)),
            "rpm": rpm,
            "tpm": tpm,
            "budget_tokens": budget_tokens,
            "created_at": time.time(),
        }
        await self._run_in_transaction(
            [
                (
                    "INSERT INTO gateway_keys (id, name, key_hash, models, rpm, tpm, budget_tokens, created_at) "
                    "VALUES (:id, :name, :key_hash, :models, :rpm, :tpm, :budget_tokens, :created_at)",
                    params,
                )
            ]
        )
        record = await self.get_key(key_id)
        assert record is not None
        return record, secret

    async def get_key(self, key_id: str) -> KeyRecord | None:
        row = await self._fetch_one(f"SELECT {_KEY_COLUMNS} FROM gateway_keys WHERE id = :id", {"id": key_id})
        return None if row is None else _key_record(row)

    async def find_key(self, secret: str) -> KeyRecord | None:
        row = await self._fetch_one(
            f"SELECT {_KEY_COLUMNS} FROM gateway_keys WHERE key_hash = :key_hash", {"key_hash": hash_key(secret)}
        )
        return None if row is None else _key_record(row)

    async def list_keys(self) -> list[KeyRecord]:
        rows = await self._fetch_all(f"SELECT {_KEY_COLUMNS} FROM gateway_keys ORDER BY created_at, id", {})
        return [_key_record(row) for row in rows]

    async def revoke_key(self, id_or_name: str) -> int:
        """Revokes the key with this id, or every live key with this name; returns how many."""
        return await self._run_in_transaction(
            [
                (
                    "UPDATE gateway_keys SET revoked_at = :now WHERE revoked_at IS NULL AND (id = :ref OR name = :ref)",
                    {"now": time.time(), "ref": id_or_name},
                )
            ]
        )

    # --- the request path -------------------------------------------------------------------------------

    async def admit(self, secret: str, model: str, reserve: int, now: float) -> Admitted | None:
        """Counts the request against the key's limits if they all allow it, atomically; None if not."""
        window = int(now // self.window)
        row = await self._fetch_one(
            self._admit_sql,
            {
                "key_hash": hash_key(secret),
                "model_tag": models_tag([model]),
                "reserve": reserve,
                "window": window,
            },
        )
        if row is None:
            return None
        return Admitted(key_id=row[0], key_name=row[1], window=window, reserve=reserve)

    async def record(self, rows: Sequence[UsageRow]) -> None:
        """Writes ledger rows and settles their keys' token counters, all in one transaction."""
        window = int(time.time() // self.window)
        statements: list[tuple[str, dict[str, Any]]] = []
        for row in rows:
            tokens = row.prompt_tokens + row.completion_tokens
            statements.append(
                (
                    _SETTLE,
                    {
                        "tokens": tokens,
                        "reserve": row.reserve,
                        "window": window,
                        "admit_window": row.admit_window,
                        "key_id": row.key_id,
                    },
                )
            )
            statements.append(
                (
                    _INSERT_USAGE,
                    {
                        "key_id": row.key_id,
                        "model": row.model,
                        "upstream": row.upstream,
                        "started_at": row.started_at,
                        "prompt_tokens": row.prompt_tokens,
                        "completion_tokens": row.completion_tokens,
                        "ttft_ms": row.ttft_ms,
                        "duration_ms": row.duration_ms,
                        "status": row.status,
                        "outcome": row.outcome,
                        "cancelled": row.cancelled,
                    },
                )
            )
        if statements:
            await self._run_in_transaction(statements)

    # --- reports ------------------------------------------------------------------------------------------

    async def usage_rows(self, since: float = 0.0) -> list[dict[str, Any]]:
        rows = await self._fetch_all(
            "SELECT key_id, model, upstream, started_at, prompt_tokens, completion_tokens, ttft_ms, duration_ms, "
            "status, outcome, cancelled FROM gateway_usage WHERE started_at >= :since ORDER BY id",
            {"since": since},
        )
        names = (
            "key_id",
            "model",
            "upstream",
            "started_at",
            "prompt_tokens",
            "completion_tokens",
            "ttft_ms",
            "duration_ms",
            "status",
            "outcome",
            "cancelled",
        )
        return [{**dict(zip(names, row, strict=True)), "cancelled": bool(row[10])} for row in rows]

    async def usage_summary(self, since: float = 0.0) -> list[UsageSummary]:
        rows = await self._fetch_all(_SUMMARY, {"since": since})
        return [
            UsageSummary(
                key_id=row[0],
                key_name=row[1],
                model=row[2],
                requests=int(row[3]),
                prompt_tokens=int(row[4] or 0),
                completion_tokens=int(row[5] or 0),
                failed=int(row[6] or 0),
                cancelled=int(row[7] or 0),
                mean_ttft_ms=None if row[8] is None else float(row[8]),
            )
            for row in rows
        ]

    @property
    @abstractmethod
    def _admit_sql(self) -> str: ...


class SQLiteStore(Store):
    """SQLite in WAL mode. Its statements take microseconds, so they run on the event loop directly; an
    ``UPDATE`` holds the database's write lock, which also keeps several gateway processes on one file exact.
    """

    def __init__(self, path: str, window: int = 60) -> None:
        super().__init__(window)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL with synchronous=NORMAL stays consistent after a crash and skips an fsync per commit.
        self._db.execute("PRAGMA synchronous=NORMAL")
        for statement in _SCHEMA:
            self._db.execute(statement.format(serial="INTEGER"))
        self.__admit_sql = _ADMIT.format(find="instr")

    @property
    def _admit_sql(self) -> str:
        return self.__admit_sql

    async def _fetch_one(self, sql: str, params: dict[str, Any]) -> Sequence[Any] | None:
        # Each statement is its own transaction (autocommit); fetching every row finishes it, which an
        # UPDATE ... RETURNING needs before its write lock is released.
        rows = self._db.execute(sql, params).fetchall()
        return rows[0] if rows else None

    async def _fetch_all(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        return list(self._db.execute(sql, params).fetchall())

    async def _run_in_transaction(self, statements: list[tuple[str, dict[str, Any]]]) -> int:
        changed = 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                changed = self._db.execute(sql, params).rowcount
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return changed

    async def close(self) -> None:
        self._db.close()


_NAMED_PARAMETER = re.compile(r"(?<!:):([a-z_]+)")


class PostgresStore(Store):
    """PostgreSQL through a psycopg 3 async pool; the gateways sharing it share keys, limits and ledger."""

    def __init__(self, url: str, window: int = 60, *, max_connections: int = 20) -> None:
        super().__init__(window)
        from psycopg_pool import AsyncConnectionPool

        self._pool = AsyncConnectionPool(
            url, min_size=1, max_size=max_connections, open=False, kwargs={"autocommit": True}
        )
        self.__admit_sql = self._dialect(_ADMIT.format(find="strpos"))
        self._translated: dict[str, str] = {}

    @staticmethod
    def _dialect(sql: str) -> str:
        return _NAMED_PARAMETER.sub(r"%(\1)s", sql)

    def _sql(self, sql: str) -> str:
        translated = self._translated.get(sql)
        if translated is None:
            translated = self._translated[sql] = self._dialect(sql)
        return translated

    @property
    def _admit_sql(self) -> str:
        return self.__admit_sql

    async def open(self) -> None:
        await self._pool.open(wait=True, timeout=30)
        # Several gateways may start at once; the advisory lock keeps their CREATE IF NOT EXISTS apart.
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(4711)")
            for statement in _SCHEMA:
                await conn.execute(statement.format(serial="BIGSERIAL"))

    async def _fetch_one(self, sql: str, params: dict[str, Any]) -> Sequence[Any] | None:
        query = sql if sql is self.__admit_sql else self._sql(sql)
        async with self._pool.connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchone()

    async def _fetch_all(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(self._sql(sql), params)
            return list(await cursor.fetchall())

    async def _run_in_transaction(self, statements: list[tuple[str, dict[str, Any]]]) -> int:
        changed = 0
        async with self._pool.connection() as conn, conn.transaction():
            for sql, params in statements:
                cursor = await conn.execute(self._sql(sql), params)
                changed = cursor.rowcount
        return changed

    async def close(self) -> None:
        await self._pool.close()


async def open_store(database: DatabaseConfig, window: int = 60) -> Store:
    if database.is_postgresql:
        try:
            store = PostgresStore(database.url, window)
        except ImportError as exc:
            raise ConfigError("PostgreSQL needs psycopg: pip install 'chunkwise[gateway]'") from exc
        try:
            await store.open()
        except Exception as exc:
            await store.close()
            raise ConfigError(f"cannot open the PostgreSQL database: {exc}") from exc
        return store
    try:
        return SQLiteStore(database.url[len("sqlite:///") :], window)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open the SQLite database {database.url}: {exc}") from exc
