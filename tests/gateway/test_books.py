"""The gateway's books under failure: a gateway killed mid-stream, clients that cancel, chaos.

The gateway runs as a real ``chunkwise gateway`` subprocess, so that SIGKILL is a real crash; the
upstream is the real server on the session's engine. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from chunkwise.gateway import ConfigError, load_config
from chunkwise.gateway._admission import estimate_prompt_tokens
from tests.client.servers import free_port
from tests.server.conftest import MODEL, RunningServer

from .conftest import create_key, gateway_process, make_config, run_gateway, with_store

#: Ledger progress every PROGRESS seconds: a crashed gateway's rows are stale after five of them.
PROGRESS = 0.2
STORY: list[dict[str, Any]] = [{"role": "user", "content": "Write a long story about a dragon and a knight."}]


def write_config(tmp_path: Path, database_url: str, upstream: RunningServer) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""[gateway]
health_check_interval = 0.0
ledger_progress_interval = {PROGRESS}

[database]
url = "{database_url}"

[[upstreams]]
name = "a"
url = "{upstream.url}/v1"
models = ["{MODEL}"]
"""
    )
    return path


def settled_books(config: Path, count: int, timeout: float = 20.0) -> tuple[list[dict[str, Any]], Any]:
    """The ledger's rows and the key once ``count`` rows are settled and nothing is reserved any more."""
    loaded = load_config(config)
    deadline = time.monotonic() + timeout
    while True:
        rows = with_store(loaded, lambda store: store.usage_rows())
        [key] = with_store(loaded, lambda store: store.list_keys())
        settled = [row for row in rows if row["outcome"] != "open"]
        if (len(settled) >= count and key.reserved_tokens == 0) or time.monotonic() > deadline:
            return rows, key
        time.sleep(0.1)


def test_a_gateway_killed_mid_stream_bills_what_it_delivered_after_a_restart(
    upstream: RunningServer, database_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, database_url, upstream)
    key = create_key(load_config(config), "crash", budget_tokens=100_000)
    port = free_port()
    body = {"model": MODEL, "messages": STORY, "max_tokens": 400, "stream": True, "temperature": 0}
    received = 0
    with (
        gateway_process(config, port) as process,
        httpx.stream(
            "POST",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}"},
            timeout=60,
        ) as response,
    ):
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                received += 1
                if received == 8:
                    break
        time.sleep(3 * PROGRESS)  # a progress write after the eighth chunk reached the client
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    left = with_store(load_config(config), lambda store: store.usage_rows())
    assert [row["outcome"] for row in left] == ["open"]  # the dead gateway left its row open
    with gateway_process(config, port):
        rows, record = settled_books(config, 1)
    [row] = rows
    assert row["outcome"] == "interrupted"
    assert row["completion_tokens"] >= received
    assert row["prompt_tokens"] > 0 and row["prompt_estimated"]
    assert record.reserved_tokens == 0
    assert record.tokens_used == row["prompt_tokens"] + row["completion_tokens"]


def test_a_cancelled_stream_bills_the_prompt_from_the_gateways_estimate(
    upstream: RunningServer, database_url: str
) -> None:
    config = make_config(database_url, [("a", f"{upstream.url}/v1", [MODEL])], ledger_progress_interval=PROGRESS)
    key = create_key(config, "cancel")
    messages = [{"role": "user", "content": "Tell me about the weather. " * 40 + "Write a long story."}]
    body = {"model": MODEL, "messages": messages, "max_tokens": 300, "stream": True}
    with run_gateway(config) as gateway:
        with httpx.stream(
            "POST",
            f"{gateway.url}/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}"},
            timeout=60,
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break  # and hang up
        [row] = gateway.usage_rows(1)
    assert row["cancelled"] and row["outcome"] == "cancelled"
    assert row["prompt_tokens"] == estimate_prompt_tokens(body) > 200 and row["prompt_estimated"]
    assert row["completion_tokens"] >= 1


# --- bounded growth ----------------------------------------------------------------------------------


def test_made_up_models_are_counted_as_unknown_and_stored_strings_stay_small(
    upstream: RunningServer, sqlite_url: str
) -> None:
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])])
    key = create_key(config, "anything")  # no model list: any model name gets past the key
    headers = {"authorization": f"Bearer {key}"}
    huge = "m" * 1_000_000
    with run_gateway(config) as gateway, httpx.Client(base_url=gateway.url, headers=headers, timeout=60) as http:
        for index in range(30):
            made_up = {"model": f"made-up-{index}", "messages": STORY, "max_tokens": 1}
            assert http.post("/v1/chat/completions", json=made_up).status_code == 404
        refused = http.post("/v1/chat/completions", json={"model": huge, "messages": STORY, "max_tokens": 1})
        assert refused.status_code == 404 and len(refused.content) < 2000
        rows = gateway.usage_rows(31)
        exposition = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    assert {row["model"] for row in rows} == {"unknown"}
    assert "made-up" not in exposition and huge[:100] not in exposition
    assert len(exposition) < 100_000


# --- operations ----------------------------------------------------------------------------------------


def test_key_names_with_control_characters_are_refused(sqlite_url: str) -> None:
    # A tab or newline in a name forged rows in `keys list`, which writes tab-separated lines.
    from click.testing import CliRunner

    from chunkwise.cli import main

    config = make_config(sqlite_url, [("a", "http://127.0.0.1:9/v1", [MODEL])])
    for name in ("tab\there", "new\nline", "", "x" * 101):
        with pytest.raises(ConfigError, match="key name"):
            create_key(config, name)
    config_path = Path(sqlite_url[len("sqlite:///") :]).parent / "gateway.toml"
    config_path.write_text(
        f'[database]\nurl = "{sqlite_url}"\n[[upstreams]]\nname = "a"\nurl = "http://127.0.0.1:9/v1"\n'
    )
    result = CliRunner().invoke(main, ["keys", "create", "--config", str(config_path), "--name", "forged\tadmin"])
    assert result.exit_code == 1 and "control characters" in result.output


def test_metrics_can_require_a_token(upstream: RunningServer, sqlite_url: str) -> None:
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])], metrics_token="ops-secret")
    with run_gateway(config) as gateway:
        refused = httpx.get(f"{gateway.url}/metrics", timeout=10)
        wrong = httpx.get(f"{gateway.url}/metrics", headers={"authorization": "Bearer nope"}, timeout=10)
        allowed = httpx.get(f"{gateway.url}/metrics", headers={"authorization": "Bearer ops-secret"}, timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert wrong.status_code == 401
    assert allowed.status_code == 200 and "chunkwise_gateway" in allowed.text


def test_usage_is_indexed_by_key_and_time_and_old_rows_can_be_pruned(
    upstream: RunningServer, tmp_path: Path, sqlite_url: str
) -> None:
    import sqlite3

    from click.testing import CliRunner

    from chunkwise.cli import main

    config_path = write_config(tmp_path, sqlite_url, upstream)
    config = load_config(config_path)
    key = create_key(config, "old")
    with run_gateway(config) as gateway:
        for _ in range(2):
            body = {"model": MODEL, "messages": STORY, "max_tokens": 1}
            response = httpx.post(
                f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=60
            )
            assert response.status_code == 200
        gateway.usage_rows(2)
    database = sqlite3.connect(sqlite_url[len("sqlite:///") :])
    plan = database.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM gateway_usage WHERE key_id = 'k' AND started_at >= 0"
    ).fetchall()
    assert "gateway_usage_key_started" in str(plan)
    database.execute("UPDATE gateway_usage SET started_at = started_at - 100 * 86400 WHERE id = 1")
    database.commit()
    database.close()
    result = CliRunner().invoke(main, ["usage", "--config", str(config_path), "--prune-before", "90d", "--json"])
    assert result.exit_code == 0, result.output
    assert "pruned 1 ledger row" in result.stderr
    [summary] = json.loads(result.stdout)
    assert summary["requests"] == 1


def test_a_body_naming_a_key_twice_is_refused(upstream: RunningServer, sqlite_url: str) -> None:
    # Routed by the last "model", forwarded raw to an upstream that may read the first.
    config = make_config(sqlite_url, [("a", f"{upstream.url}/v1", [MODEL])])
    key = create_key(config, "dupes", models=[MODEL])
    body = b'{"model": "gpt-4", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "model": "%s"}'
    with run_gateway(config) as gateway:
        answer = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            content=body % MODEL.encode(),
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
            timeout=60,
        )
        nested = b'{"model": "%s", "messages": [{"role": "user", "content": "Hi", "content": "Hey"}], "max_tokens": 1}'
        allowed = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            content=nested % MODEL.encode(),
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
            timeout=60,
        )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "duplicate_key" and answer.json()["error"]["param"] == "model"
    assert allowed.status_code == 200  # only the top level is checked
    direct = httpx.post(
        f"{upstream.url}/v1/chat/completions",
        content=body % MODEL.encode(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert direct.status_code == 400 and direct.json()["error"]["code"] == "duplicate_key"


# --- chaos -----------------------------------------------------------------------------------------------

CHAOS_REQUESTS = 200
CHAOS_KEYS = 20
CHAOS_BUDGET = 1200
CHAOS_MAX_TOKENS = 8
#: What a stream may deliver between two progress writes: the most a crash can leave unbilled per request.
CHAOS_SLACK = 12


def test_chaos_random_kills_leave_the_books_right(upstream: RunningServer, database_url: str, tmp_path: Path) -> None:
    import asyncio
    import random

    config_path = write_config(tmp_path, database_url, upstream)
    config = load_config(config_path)
    secrets = [create_key(config, f"chaos-{index}", budget_tokens=CHAOS_BUDGET) for index in range(CHAOS_KEYS)]
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    delivered: dict[str, list[int]] = {secret: [] for secret in secrets}
    chance = random.Random(20)

    async def one(secret: str) -> None:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Count slowly from one to fifty."}],
            "max_tokens": CHAOS_MAX_TOKENS,
            "stream": True,
        }
        while True:
            chunks = 0
            try:
                async with (
                    httpx.AsyncClient(timeout=30) as client,
                    client.stream("POST", url, json=body, headers={"authorization": f"Bearer {secret}"}) as answer,
                ):
                    if answer.status_code == 200:
                        async for line in answer.aiter_lines():
                            if line.startswith("data: {") and '"content":"' in line.replace(" ", ""):
                                chunks += 1
            except httpx.ConnectError:
                await asyncio.sleep(0.05)  # the gateway is down: this request never reached it; try again
                continue
            except httpx.HTTPError:
                pass  # cut by a kill
            delivered[secret].append(chunks)
            return

    async def clients() -> None:
        jobs = [secrets[index % CHAOS_KEYS] for index in range(CHAOS_REQUESTS)]
        limit = asyncio.Semaphore(16)

        async def run(secret: str) -> None:
            async with limit:
                await one(secret)

        await asyncio.gather(*(run(secret) for secret in jobs))

    def chaos(stop: list[bool]) -> None:
        while not stop[0]:
            with gateway_process(config_path, port) as process:
                deadline = time.monotonic() + chance.uniform(2.0, 4.0)
                while time.monotonic() < deadline and not stop[0]:
                    time.sleep(0.05)
                if not stop[0]:
                    process.send_signal(signal.SIGKILL)

    import threading

    stop = [False]
    killer = threading.Thread(target=chaos, args=(stop,))
    killer.start()
    try:
        asyncio.run(clients())
    finally:
        stop[0] = True
        killer.join(60)
    with gateway_process(config_path, port):  # one more start: reconciliation of what the last kill left
        deadline = time.monotonic() + 20
        while True:
            rows = with_store(config, lambda store: store.usage_rows())
            keys = with_store(config, lambda store: store.list_keys())
            if all(row["outcome"] != "open" for row in rows) and all(key.reserved_tokens == 0 for key in keys):
                break
            assert time.monotonic() < deadline, "reservations or open rows outlived their requests"
            time.sleep(0.2)
    by_name = {key.name: key for key in keys}
    interrupted = sum(row["outcome"] == "interrupted" for row in rows)
    assert interrupted >= 1, "no kill landed on a running request"
    for index, secret in enumerate(secrets):
        key = by_name[f"chaos-{index}"]
        mine = [row for row in rows if row["key_id"] == key.id]
        served = [count for count in delivered[secret] if count > 0]
        assert len(mine) >= len(served)  # every request that delivered a chunk has its row
        cut = sum(row["outcome"] == "interrupted" for row in mine)
        assert sum(row["completion_tokens"] for row in mine) >= sum(served) - CHAOS_SLACK * cut
        assert key.tokens_used == sum(row["prompt_tokens"] + row["completion_tokens"] for row in mine)
        assert key.tokens_used <= CHAOS_BUDGET
