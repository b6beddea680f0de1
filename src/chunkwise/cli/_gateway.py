"""``chunkwise gateway``, ``chunkwise keys`` and ``chunkwise usage``: run the gateway and manage its database."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from .._errors import ChunkwiseError

__all__ = ["gateway", "keys", "nodes", "usage"]

_T = TypeVar("_T")

_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default="gateway.toml",
    show_default=True,
    help="The gateway's TOML config (database and upstreams).",
)


def _require_gateway_extra() -> None:
    """Import the gateway (with its uvicorn protocol) once, turning a missing module into a clear error."""
    try:
        import chunkwise.gateway  # noqa: F401  (with its uvicorn protocol)
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"the gateway needs {exc.name}, which is not installed: pip install 'chunkwise[gateway]'"
        ) from exc


def _with_store(config_path: Path, action: Callable[[Any], Awaitable[_T]]) -> _T:
    """Runs ``action(store)`` against the config's database, turning gateway errors into CLI errors."""
    _require_gateway_extra()
    from ..gateway import load_config, open_store

    async def run() -> _T:
        config = load_config(config_path)
        store = await open_store(config.database, config.settings.limit_window)
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except ChunkwiseError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@_config_option
@click.option("--host", default=None, help="Address to listen on. Default: [gateway] host, else 127.0.0.1.")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port. Default: [gateway] port, else 8080.")
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="warning",
    show_default=True,
)
def gateway(config_path: Path, host: str | None, port: int | None, log_level: str) -> None:
    """Run the gateway: keys, limits, a usage ledger and failover in front of OpenAI-compatible upstreams."""
    _require_gateway_extra()
    import uvicorn

    from ..gateway import GatewayHttpProtocol, create_gateway_app, load_config

    try:
        config = load_config(config_path)
    except ChunkwiseError as exc:
        raise click.ClickException(str(exc)) from exc
    host = host or config.settings.host
    port = config.settings.port if port is None else port
    app = create_gateway_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            http=GatewayHttpProtocol,
            ws="none",
            lifespan="on",
            timeout_graceful_shutdown=3,
        )
    )
    upstreams = [f"{upstream.name} ({upstream.url})" for upstream in config.upstreams]
    if config.nodes is not None:
        upstreams.append(f"the nodes that join ({len(config.nodes.trusted)} trusted keys)")
    click.echo(f"chunkwise gateway on http://{host}:{port} in front of {', '.join(upstreams)}", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise click.ClickException(f"could not start on {host}:{port}")


@click.group()
def keys() -> None:
    """Create, list and revoke the gateway's API keys."""


@keys.command("create")
@_config_option
@click.option("--name", required=True, help="Who or what the key is for (shown in listings and metrics).")
@click.option("--model", "models", multiple=True, help="A model the key may use; repeat. Default: every model.")
@click.option("--rpm", type=click.IntRange(min=1), default=None, help="Requests per minute.")
@click.option("--tpm", type=click.IntRange(min=1), default=None, help="Tokens (prompt + completion) per minute.")
@click.option("--budget-tokens", type=click.IntRange(min=1), default=None, help="Tokens in total, ever.")
def create_key(
    config_path: Path,
    name: str,
    models: tuple[str, ...],
    rpm: int | None,
    tpm: int | None,
    budget_tokens: int | None,
) -> None:
    """Create a key and print it, once: it is stored only as a hash. The key is the last line of stdout."""

    async def action(store: Any) -> tuple[Any, str]:
        result: tuple[Any, str] = await store.create_key(
            name, models=models, rpm=rpm, tpm=tpm, budget_tokens=budget_tokens
        )
        return result

    record, secret = _with_store(config_path, action)
    click.echo(f"created {record.id} ({record.name}); the key is shown only now:", err=True)
    click.echo(secret)


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)


def _echo_table(columns: tuple[str, ...], rows: Iterable[tuple[object, ...]]) -> None:
    """Tab-separated lines under a header line, for reading and for ``cut``."""
    click.echo("\t".join(columns))
    for row in rows:
        click.echo("\t".join(str(cell) for cell in row))


@keys.command("list")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key.")
def list_keys(config_path: Path, as_json: bool) -> None:
    """List the keys with their limits and the tokens they used."""
    records = _with_store(config_path, lambda store: store.list_keys())
    if as_json:
        for record in records:
            click.echo(msgspec.json.encode(record).decode())
        return
    _echo_table(
        ("id", "name", "models", "rpm", "tpm", "budget", "used", "state"),
        (
            (
                record.id,
                record.name,
                ",".join(record.models) or "*",
                _limit(record.rpm),
                _limit(record.tpm),
                _limit(record.budget_tokens),
                record.tokens_used,
                "revoked" if record.revoked_at is not None else "active",
            )
            for record in records
        ),
    )


@keys.command("revoke")
@_config_option
@click.argument("key")
def revoke_key(config_path: Path, key: str) -> None:
    """Revoke KEY (a key id, or a name: every active key with that name)."""
    count = _with_store(config_path, lambda store: store.revoke_key(key))
    if not count:
        raise click.ClickException(f"no active key has the id or name {key!r}")
    click.echo(f"revoked {count} key{'s' if count != 1 else ''}")


@click.group()
def nodes() -> None:
    """Manage the node keys the gateway trusts ([nodes] trusted in its config); a running gateway picks up
    the change without a restart."""


def _edit_trust(config_path: Path, change: Callable[[list[str]], list[str]]) -> tuple[str, ...]:
    _require_gateway_extra()
    from ..gateway import edit_trusted_keys

    try:
        return edit_trusted_keys(config_path, change)
    except ChunkwiseError as exc:
        raise click.ClickException(str(exc)) from exc


def _checked_key(key: str) -> str:
    from ..signing import decode_public_key

    try:
        decode_public_key(key)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="KEY") from None
    return key.strip()


@nodes.command("allow")
@_config_option
@click.argument("key")
def allow_node(config_path: Path, key: str) -> None:
    """Trust KEY: the base64 Ed25519 key a node's GET /signing-key shows."""
    key = _checked_key(key)
    _edit_trust(config_path, lambda keys: keys if key in keys else [*keys, key])
    click.echo(f"trusted {key}")


@nodes.command("revoke")
@_config_option
@click.argument("key")
def revoke_node(config_path: Path, key: str) -> None:
    """Stop trusting KEY; a node that joined with it leaves the pool."""
    key = _checked_key(key)
    found: list[bool] = []

    def without(keys: list[str]) -> list[str]:
        found.append(key in keys)
        return [entry for entry in keys if entry != key]

    _edit_trust(config_path, without)
    if not found[0]:
        raise click.ClickException(f"{key} is not trusted by {config_path}")
    click.echo(f"revoked {key}")


@nodes.command("list")
@_config_option
def list_nodes(config_path: Path) -> None:
    """The trusted node keys, one a line."""
    _require_gateway_extra()
    from ..gateway import read_trusted_keys

    try:
        trusted = read_trusted_keys(config_path)
    except ChunkwiseError as exc:
        raise click.ClickException(str(exc)) from exc
    for key in trusted:
        click.echo(key)


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float | None = None) -> float:
    """``30m``, ``12h``, ``7d`` (ago), or an ISO date/time (local time unless it has an offset)."""
    now = time.time() if now is None else now
    match = _RELATIVE.match(text.strip())
    if match:
        return now - float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a duration like 30m, 12h, 7d nor an ISO date/time") from None


@click.command()
@_config_option
@click.option("--since", default=None, help="Only requests since then: 30m, 12h, 7d or an ISO date/time.")
@click.option("--json", "as_json", is_flag=True, help="JSON: one object per key and model.")
@click.option(
    "--prune-before",
    default=None,
    help="First delete the settled rows of requests started before then (90d, or an ISO date/time).",
)
def usage(config_path: Path, since: str | None, as_json: bool, prune_before: str | None) -> None:
    """Report requests and tokens per key and model from the usage ledger."""
    if prune_before is not None:
        cutoff = parse_since(prune_before)
        pruned = _with_store(config_path, lambda store: store.prune_usage(cutoff))
        click.echo(f"pruned {pruned} ledger row{'s' if pruned != 1 else ''}", err=True)
    start = parse_since(since) if since else 0.0
    summaries = _with_store(config_path, lambda store: store.usage_summary(start))
    if as_json:
        click.echo(msgspec.json.encode(summaries).decode())
        return
    if not summaries:
        click.echo("no requests" + (f" since {since}" if since else ""), err=True)
        return
    _echo_table(
        ("key", "name", "model", "requests", "prompt", "completion", "failed", "cancelled", "mean_ttft_ms"),
        (
            (
                row.key_id,
                row.key_name,
                row.model,
                row.requests,
                row.prompt_tokens,
                row.completion_tokens,
                row.failed,
                row.cancelled,
                "-" if row.mean_ttft_ms is None else f"{row.mean_ttft_ms:.1f}",
            )
            for row in summaries
        ),
    )
