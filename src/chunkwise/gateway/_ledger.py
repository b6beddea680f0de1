"""Keys, limits and the usage ledger in one database: SQLite (default) or PostgreSQL, behind one interface.

Both speak the same SQL, written once with ``:name`` parameters. The books hold under concurrency and
across crashes:

* **Admission** is one atomic step: the key's ``UPDATE ... WHERE <limits hold>`` and the request's ledger row,
  opened with outcome ``open``. A request reserves what it can cost (its prompt's bound plus its completion
  bound) and is admitted only while ``used + reserved + reservation <= budget``. On PostgreSQL that is one
  statement (a data-modifying CTE), so one round trip, and gateways sharing the database never over-admit.
* **Progress**: while a request runs, its row is brought up to date at least every progress interval
  (:meth:`Store.progress`, batched by the writer), which also marks it as alive.
* **Settlement** closes the row (``outcome`` no longer ``open``) and, in the same transaction, moves the
  key's reservation into ``tokens_used``; a row is settled once, whoever gets there first.
* **Reconciliation** settles rows whose gateway stopped updating them (it crashed): :meth:`Store.reconcile`,
  at start-up and periodically, bills what their last progress recorded and releases their reservation.
  So a reservation never outlives its request by more than the staleness window.

Prompt tokens the upstream did not report (a cancel, an upstream that died) are billed from the gateway's
own estimate and marked ``prompt_estimated``.

SQLite's calls that may block run on one worker thread, off the event loop; admission, which never waits
(see :class:`SQLiteStore`), runs on the loop. PostgreSQL goes through psycopg 3: it is fully typed
(mypy --strict), async-native with a well-kept pool (psycopg_pool), prepares repeated statements on the
server by itself, and its binary wheel needs no compiler.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._config import ConfigError, DatabaseConfig
from ._keys import KeyRecord, generate_key, hash_key, models_tag, parse_models_tag

__all__ = ["OPEN", "Admitted", "Progress", "Store", "UsageRow", "UsageSummary", "open_store"]

#: The outcome of a ledger row whose request is still running (or whose gateway died running it).
OPEN = "open"

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

# Columns added since the first release: (name, type and default), added to an older database on open.
_ADDED_COLUMNS = [
    ("updated_at", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
    ("reserve", "BIGINT NOT NULL DEFAULT 0"),
    ("admit_window", "BIGINT NOT NULL DEFAULT 0"),
    ("prompt_estimated", "BOOLEAN NOT NULL DEFAULT FALSE"),
]

_INDEXES = [
    # usage reports per key and time; reconciliation looks for open rows by age.
    "CREATE INDEX IF NOT EXISTS gateway_usage_key_started ON gateway_usage (key_id, started_at)",
    "CREATE INDEX IF NOT EXISTS gateway_usage_open ON gateway_usage (outcome, updated_at)",
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
        AND (budget_tokens IS NULL OR tokens_used + reserved_tokens + :reserve <= budget_tokens)
    RETURNING id, name"""

_OPEN_COLUMNS = """key_id, model, upstream, started_at, updated_at, prompt_tokens, prompt_estimated,
        completion_tokens, ttft_ms, duration_ms, status, outcome, cancelled, reserve, admit_window"""
_OPEN_VALUES = f""":model, NULL, :now, :now, :prompt, TRUE, 0, NULL, 0, 0, '{OPEN}', FALSE, :reserve, :window"""

# PostgreSQL: the key's update and the request's open row in one statement.
_ADMIT_AND_OPEN = f"""WITH admitted AS ({_ADMIT})
    INSERT INTO gateway_usage ({_OPEN_COLUMNS})
    SELECT id, {_OPEN_VALUES} FROM admitted
    RETURNING id, key_id, (SELECT name FROM admitted)"""

_OPEN_ROW = f"INSERT INTO gateway_usage ({_OPEN_COLUMNS}) VALUES (:key_id, {_OPEN_VALUES})"

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

# Closes a running request's row; matches nothing if it was settled already (by reconciliation, say).
_CLOSE_USAGE = f"""UPDATE gateway_usage SET upstream = :upstream, updated_at = :now, prompt_tokens = :prompt_tokens,
        prompt_estimated = :prompt_estimated, completion_tokens = :completion_tokens, ttft_ms = :ttft_ms,
        duration_ms = :duration_ms, status = :status, outcome = :outcome, cancelled = :cancelled
    WHERE id = :usage_id AND outcome = '{OPEN}'"""

_PROGRESS = f"""UPDATE gateway_usage SET updated_at = :now, prompt_tokens = :prompt_tokens,
        prompt_estimated = :prompt_estimated, completion_tokens = :completion_tokens
    WHERE id = :usage_id AND outcome = '{OPEN}'"""

_STALE = f"""SELECT id, key_id, model, upstream, started_at, prompt_tokens, prompt_estimated, completion_tokens,
        reserve, admit_window FROM gateway_usage WHERE outcome = '{OPEN}' AND updated_at < :cutoff"""

_SUMMARY = """SELECT k.id, k.name, u.model, COUNT(*), SUM(u.prompt_tokens), SUM(u.completion_tokens),
        SUM(CASE WHEN u.status >= 400 OR u.outcome NOT IN ('ok', 'open') THEN 1 ELSE 0 END),
        SUM(CASE WHEN u.cancelled THEN 1 ELSE 0 END), AVG(u.ttft_ms)
    FROM gateway_usage u JOIN gateway_keys k ON k.id = u.key_id
    WHERE u.started_at >= :since AND (:key_id IS NULL OR u.key_id = :key_id)
    GROUP BY k.id, k.name, u.model ORDER BY k.name, k.id, u.model"""


@dataclass(frozen=True)
class Admitted:
    key_id: str
    key_name: str
    #: The limit window the request was admitted in; settlement needs it.
    window: int
    reserve: int
    #: The request's ledger row, opened at admission.
    usage_id: int
    #: The gateway's own count of the prompt, billed when the upstream reports none.
    prompt_estimate: int


@dataclass(frozen=True)
class Progress:
    """Where a running request stands, for its ledger row."""

    usage_id: int
    prompt_tokens: int
    prompt_estimated: bool
    completion_tokens: int


@dataclass(frozen=True)
class UsageRow:
    """One settled request. ``outcome``: ok, upstream_error, no_upstream, cut_short, cancelled, interrupted,
    gateway_error, bad_request."""

    usage_id: int
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
    prompt_estimated: bool = False


#: One statement of a transaction, and whether it runs only when the one before it changed a row.
_Step = tuple[str, dict[str, Any], bool]


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


#: The longest key name stored.
MAX_KEY_NAME = 100


def check_key_name(name: str) -> None:
    """Key names are shown in listings, logs and metric labels: short, printable, one line."""
    if not name or len(name) > MAX_KEY_NAME:
        raise ConfigError(f"a key name must have 1 to {MAX_KEY_NAME} characters")
    if not name.isprintable():
        raise ConfigError("a key name must not contain control characters (tabs, newlines, ...)")


class Store(ABC):
    """Keys, limits and ledger. Every method is a coroutine; SQLite's run on a worker thread."""

    def __init__(self, window: int = 60) -> None:
        self.window = window

    # --- the dialect: how statements run --------------------------------------------------------------

    @abstractmethod
    async def _fetch_one(self, sql: str, params: dict[str, Any]) -> Sequence[Any] | None: ...

    @abstractmethod
    async def _fetch_all(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]: ...

    @abstractmethod
    async def _run_in_transaction(self, steps: Sequence[_Step]) -> int:
        """Runs the steps in one transaction (a conditional step only after one that changed a row);
        returns how many rows the statements changed in all."""

    @abstractmethod
    async def _admit_and_open(self, params: dict[str, Any]) -> Sequence[Any] | None:
        """The admission update and the open ledger row, atomically: ``(usage id, key id, key name)``."""

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
        check_key_name(name)
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
                    False,
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
                    False,
                )
            ]
        )

    # --- the request path -------------------------------------------------------------------------------

    async def admit(
        self, secret: str, model: str, reserve: int, now: float, *, prompt_estimate: int = 0, ledger_model: str = ""
    ) -> Admitted | None:
        """Counts the request against the key's limits if they all allow it and opens its ledger row,
        atomically; None if a limit does not allow it. ``ledger_model`` is the model as the ledger stores it."""
        window = int(now // self.window)
        row = await self._admit_and_open(
            {
                "key_hash": hash_key(secret),
                "model_tag": models_tag([model]),
                "reserve": reserve,
                "window": window,
                "model": ledger_model or model,
                "now": now,
                "prompt": prompt_estimate,
            }
        )
        if row is None:
            return None
        return Admitted(
            key_id=row[1],
            key_name=row[2],
            window=window,
            reserve=reserve,
            usage_id=int(row[0]),
            prompt_estimate=prompt_estimate,
        )

    async def progress(self, updates: Sequence[Progress]) -> None:
        """Brings running requests' rows up to date (and marks them alive), in one transaction."""
        now = time.time()
        steps: list[_Step] = [
            (
                _PROGRESS,
                {
                    "now": now,
                    "usage_id": update.usage_id,
                    "prompt_tokens": update.prompt_tokens,
                    "prompt_estimated": update.prompt_estimated,
                    "completion_tokens": update.completion_tokens,
                },
                False,
            )
            for update in updates
        ]
        if steps:
            await self._run_in_transaction(steps)

    async def record(self, rows: Sequence[UsageRow]) -> int:
        """Closes requests' rows and settles their keys' token counters, in one transaction; a row that was
        settled already is left alone. Returns how many rows were settled now."""
        now = time.time()
        window = int(now // self.window)
        steps: list[_Step] = []
        for row in rows:
            steps.append(
                (
                    _CLOSE_USAGE,
                    {
                        "usage_id": row.usage_id,
                        "now": now,
                        "upstream": row.upstream,
                        "prompt_tokens": row.prompt_tokens,
                        "prompt_estimated": row.prompt_estimated,
                        "completion_tokens": row.completion_tokens,
                        "ttft_ms": row.ttft_ms,
                        "duration_ms": row.duration_ms,
                        "status": row.status,
                        "outcome": row.outcome,
                        "cancelled": row.cancelled,
                    },
                    False,
                )
            )
            steps.append(
                (
                    _SETTLE,
                    {
                        "tokens": row.prompt_tokens + row.completion_tokens,
                        "reserve": row.reserve,
                        "window": window,
                        "admit_window": row.admit_window,
                        "key_id": row.key_id,
                    },
                    True,
                )
            )
        if not steps:
            return 0
        return await self._run_in_transaction(steps) // 2

    async def reconcile(self, stale_after: float, now: float | None = None) -> int:
        """Settles the rows of requests whose gateway stopped updating them ``stale_after`` seconds ago (it
        died): billed what their last progress recorded, outcome ``interrupted``. Returns how many."""
        now = time.time() if now is None else now
        stale = await self._fetch_all(_STALE, {"cutoff": now - stale_after})
        rows = [
            UsageRow(
                usage_id=int(row[0]),
                key_id=row[1],
                model=row[2],
                upstream=row[3],
                started_at=float(row[4]),
                prompt_tokens=int(row[5]),
                prompt_estimated=bool(row[6]),
                completion_tokens=int(row[7]),
                ttft_ms=None,
                duration_ms=(now - float(row[4])) * 1000.0,
                status=0,
                outcome="interrupted",
                cancelled=False,
                reserve=int(row[8]),
                admit_window=int(row[9]),
            )
            for row in stale
        ]
        return await self.record(rows)

    async def prune_usage(self, before: float) -> int:
        """Deletes settled ledger rows of requests that started before ``before``; returns how many."""
        return await self._run_in_transaction(
            [
                (
                    f"DELETE FROM gateway_usage WHERE started_at < :before AND outcome <> '{OPEN}'",
                    {"before": before},
                    False,
                )
            ]
        )

    # --- reports ------------------------------------------------------------------------------------------

    async def usage_rows(self, since: float = 0.0, key_id: str | None = None) -> list[dict[str, Any]]:
        rows = await self._fetch_all(
            "SELECT key_id, model, upstream, started_at, prompt_tokens, completion_tokens, ttft_ms, duration_ms, "
            "status, outcome, cancelled, prompt_estimated, id FROM gateway_usage "
            "WHERE started_at >= :since AND (:key_id IS NULL OR key_id = :key_id) ORDER BY id",
            {"since": since, "key_id": key_id},
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
            "prompt_estimated",
            "id",
        )
        return [
            {**dict(zip(names, row, strict=True)), "cancelled": bool(row[10]), "prompt_estimated": bool(row[11])}
            for row in rows
        ]

    async def usage_summary(self, since: float = 0.0, key_id: str | None = None) -> list[UsageSummary]:
        rows = await self._fetch_all(_SUMMARY, {"since": since, "key_id": key_id})
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


class SQLiteStore(Store):
    """SQLite in WAL mode. An ``UPDATE`` holds the database's write lock, which also keeps several gateway
    processes on one file exact.

    Calls that may block (a batch of rows, a checkpoint's fsync, waiting for a write lock another process
    holds) run on one worker thread. Admission, on every request's path, runs on the event loop through a
    connection of its own that never waits: it asks for the write lock without a busy timeout and hands
    over to the worker when another writer has it, and it leaves checkpoints to the worker's connection.
    What it does then is an indexed ``UPDATE``, one ``INSERT`` and a commit that appends to the WAL
    without an fsync: less work than the hop to a thread and back, which wakes the loop once more.
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
        present = {row[1] for row in self._db.execute("PRAGMA table_info(gateway_usage)")}
        for column, definition in _ADDED_COLUMNS:
            if column not in present:
                self._db.execute(f"ALTER TABLE gateway_usage ADD COLUMN {column} {definition}")
        for statement in _INDEXES:
            self._db.execute(statement)
        self._admit_sql = _ADMIT.format(find="instr")
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunkwise-sqlite")
        self._admitting = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        self._admitting.execute("PRAGMA synchronous=NORMAL")
        self._admitting.execute("PRAGMA wal_autocheckpoint=0")

    async def _call(self, work: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, work)

    async def _fetch_one(self, sql: str, params: dict[str, Any]) -> Sequence[Any] | None:
        # Each statement is its own transaction (autocommit); fetching every row finishes it, which an
        # UPDATE ... RETURNING needs before its write lock is released.
        rows = await self._call(lambda: self._db.execute(sql, params).fetchall())
        return rows[0] if rows else None

    async def _fetch_all(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        rows: list[Sequence[Any]] = await self._call(lambda: self._db.execute(sql, params).fetchall())
        return rows

    def _transaction(self, steps: Sequence[_Step]) -> int:
        changed = last = 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params, only_if_changed in steps:
                if only_if_changed and not last:
                    continue
                last = self._db.execute(sql, params).rowcount
                changed += max(last, 0)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return changed

    async def _run_in_transaction(self, steps: Sequence[_Step]) -> int:
        changed: int = await self._call(lambda: self._transaction(steps))
        return changed

    def _admit_now(self, db: sqlite3.Connection, params: dict[str, Any]) -> Sequence[Any] | None:
        db.execute("BEGIN IMMEDIATE")
        try:
            admitted = db.execute(self._admit_sql, params).fetchall()
            if not admitted:
                db.execute("ROLLBACK")
                return None
            key_id, name = admitted[0]
            usage_id = db.execute(_OPEN_ROW, {**params, "key_id": key_id}).lastrowid
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return (usage_id, key_id, name)

    async def _admit_and_open(self, params: dict[str, Any]) -> Sequence[Any] | None:
        try:
            return self._admit_now(self._admitting, params)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
        # Another writer holds the lock: wait for it on the worker, not on the loop.
        row: Sequence[Any] | None = await self._call(lambda: self._admit_now(self._db, params))
        return row

    async def close(self) -> None:
        self._admitting.close()
        await self._call(self._db.close)
        self._worker.shutdown()


_NAMED_PARAMETER = re.compile(r"(?<!:):([a-z_]+)")


class PostgresStore(Store):
    """PostgreSQL through a psycopg 3 async pool; the gateways sharing it share keys, limits and ledger."""

    def __init__(self, url: str, window: int = 60, *, max_connections: int = 20) -> None:
        super().__init__(window)
        from psycopg_pool import AsyncConnectionPool

        self._pool = AsyncConnectionPool(
            url, min_size=1, max_size=max_connections, open=False, kwargs={"autocommit": True}
        )
        self._admit_sql = self._dialect(_ADMIT_AND_OPEN.format(find="strpos"))
        self._translated: dict[str, str] = {}

    @staticmethod
    def _dialect(sql: str) -> str:
        # A parameter that may be NULL in "x IS NULL" needs a type PostgreSQL can infer.
        return _NAMED_PARAMETER.sub(r"%(\1)s", sql.replace(":key_id IS NULL", "CAST(:key_id AS TEXT) IS NULL"))

    def _sql(self, sql: str) -> str:
        translated = self._translated.get(sql)
        if translated is None:
            translated = self._translated[sql] = self._dialect(sql)
        return translated

    async def open(self) -> None:
        await self._pool.open(wait=True, timeout=30)
        # Several gateways may start at once; the advisory lock keeps their CREATE IF NOT EXISTS apart.
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(4711)")
            for statement in _SCHEMA:
                await conn.execute(statement.format(serial="BIGSERIAL"))
            for column, definition in _ADDED_COLUMNS:
                await conn.execute(f"ALTER TABLE gateway_usage ADD COLUMN IF NOT EXISTS {column} {definition}")
            for statement in _INDEXES:
                await conn.execute(statement)

    async def _fetch_one(self, sql: str, params: dict[str, Any]) -> Sequence[Any] | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(self._sql(sql), params)
            return await cursor.fetchone()

    async def _fetch_all(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(self._sql(sql), params)
            return list(await cursor.fetchall())

    async def _run_in_transaction(self, steps: Sequence[_Step]) -> int:
        changed = last = 0
        async with self._pool.connection() as conn, conn.transaction():
            for sql, params, only_if_changed in steps:
                if only_if_changed and not last:
                    continue
                cursor = await conn.execute(self._sql(sql), params)
                last = cursor.rowcount
                changed += max(last, 0)
        return changed

    async def _admit_and_open(self, params: dict[str, Any]) -> Sequence[Any] | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(self._admit_sql, params)
            return await cursor.fetchone()

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
