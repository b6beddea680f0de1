"""The gateway's TOML configuration: where the database is, which upstreams serve which models."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .._errors import ChunkwiseError
from ..signing import decode_public_key

__all__ = [
    "ConfigError",
    "DatabaseConfig",
    "GatewayConfig",
    "GatewaySettings",
    "NodesConfig",
    "UpstreamConfig",
    "load_config",
    "parse_trusted_keys",
]


class ConfigError(ChunkwiseError):
    """The gateway configuration is missing, unreadable or wrong."""


@dataclass(frozen=True)
class UpstreamConfig:
    """One OpenAI-compatible server; ``url`` ends in ``/v1`` (the gateway appends ``/chat/completions``)."""

    name: str
    url: str
    #: The models it serves; empty means "ask it": the health check reads its ``GET /models``.
    models: tuple[str, ...] = ()
    api_key: str | None = None


@dataclass(frozen=True)
class DatabaseConfig:
    """``sqlite:///relative/to/config.db``, ``sqlite:////absolute.db`` or ``postgresql://user:pass@host/db``."""

    url: str

    @property
    def is_postgresql(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    port: int = 8080
    #: Seconds between active health checks of every upstream (``GET {url}/models``); 0 turns them off.
    health_check_interval: float = 10.0
    #: Seconds an upstream is skipped after a connect error or a 5xx.
    ejection_cooldown: float = 30.0
    connect_timeout: float = 5.0
    #: Longest wait for any one read from an upstream; keep-alives reset it.
    read_timeout: float = 600.0
    max_body_size: int = 4 * 1024 * 1024
    #: Length of the window ``rpm``/``tpm`` count in; 60 s makes them per minute.
    limit_window: int = 60
    #: Where stored Responses (``previous_response_id``, ``GET /v1/responses/{id}``) live: a SQLite file
    #: (relative to the config file), or ``""`` for memory.
    response_store: str = ""
    #: How many stored Responses are kept; the least recently used go first.
    response_store_size: int = 1000
    #: The most tokens a request without ``max_tokens`` may cost: the models' context length. It is reserved
    #: against the key's budget while the request runs.
    model_context_tokens: int = 8192
    #: Seconds between ledger updates of running requests; a row this many times
    #: :data:`~._ledger_writer.STALE_INTERVALS` behind belongs to a gateway that died, and is settled.
    ledger_progress_interval: float = 1.0
    #: Days settled ledger rows are kept; 0 keeps them for ever (``chunkwise usage prune`` deletes on demand).
    usage_retention_days: float = 0.0
    #: When set, ``GET /metrics`` requires ``Authorization: Bearer <metrics_token>``.
    metrics_token: str = ""


@dataclass(frozen=True)
class NodesConfig:
    """``[nodes]``: the nodes that may join (``chunkwise serve --join``) and how long they stay without a word."""

    #: The Ed25519 public keys (base64, as ``GET /signing-key`` shows them) whose registrations are accepted.
    trusted: tuple[str, ...] = ()
    #: Seconds after its last registration (heartbeat) a node leaves the pool.
    heartbeat_timeout: float = 30.0
    #: Seconds a registration's timestamp may differ from the gateway's clock.
    max_clock_skew: float = 60.0


@dataclass(frozen=True)
class GatewayConfig:
    database: DatabaseConfig
    upstreams: tuple[UpstreamConfig, ...]
    settings: GatewaySettings = field(default_factory=GatewaySettings)
    #: ``None`` when the config has no ``[nodes]`` table: then no node may join.
    nodes: NodesConfig | None = None
    #: The file it was read from; a gateway with nodes re-reads its trust list when the file changes.
    path: Path | None = None


def _require(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: `{key}` must be a {kind.__name__}")
    return value


def _database_url(url: str, base: Path) -> str:
    """A SQLite URL with a relative path (SQLAlchemy style, three slashes) is made relative to the config file."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return "sqlite:///" + str((base / url[len("sqlite:///") :]).resolve())
    if url.startswith("sqlite:////"):
        return "sqlite:///" + url[len("sqlite:///") :]
    return url


def parse_config(data: dict[str, Any], base: Path) -> GatewayConfig:
    database = data.get("database", {})
    if not isinstance(database, dict):
        raise ConfigError("[database] must be a table")
    url = database.get("url", "sqlite:///gateway.db")
    if not isinstance(url, str) or not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError("[database] url must start with sqlite:///, postgresql:// or postgres://")
    nodes = _nodes_config(data.get("nodes"))
    raw_upstreams = data.get("upstreams", [])
    if not isinstance(raw_upstreams, list) or not (raw_upstreams or nodes is not None):
        raise ConfigError("the config needs at least one [[upstreams]] table, or a [nodes] table for joining nodes")
    upstreams: list[UpstreamConfig] = []
    for index, raw in enumerate(raw_upstreams):
        where = f"[[upstreams]] #{index + 1}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a table")
        name = _require(raw, "name", str, where)
        upstream_url = _require(raw, "url", str, where).rstrip("/")
        if not upstream_url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: `url` must start with http:// or https://")
        try:
            host = urlsplit(upstream_url).hostname
        except ValueError as exc:  # a port that is not a number, an unclosed [
            raise ConfigError(f"{where}: `url` is not a valid URL: {exc}") from exc
        if not host:
            raise ConfigError(f"{where}: `url` names no host")
        models = raw.get("models", [])
        if not isinstance(models, list) or not all(isinstance(model, str) for model in models):
            raise ConfigError(f"{where}: `models` must be a list of strings")
        api_key = None
        if "api_key_env" in raw:
            env = _require(raw, "api_key_env", str, where)
            api_key = os.environ.get(env)
            if api_key is None:
                raise ConfigError(f"{where}: the environment variable {env} (api_key_env) is not set")
        upstreams.append(UpstreamConfig(name=name, url=upstream_url, models=tuple(models), api_key=api_key))
    names = [upstream.name for upstream in upstreams]
    if len(set(names)) != len(names):
        raise ConfigError("upstream names must be unique")
    settings_table = data.get("gateway", {})
    if not isinstance(settings_table, dict):
        raise ConfigError("[gateway] must be a table")
    known = set(GatewaySettings.__dataclass_fields__)
    unknown = set(settings_table) - known
    if unknown:
        raise ConfigError(f"[gateway] has unknown settings: {', '.join(sorted(unknown))}")
    defaults = GatewaySettings()
    for name, value in settings_table.items():
        expected = type(getattr(defaults, name))
        # TOML writes 10 for 10.0; a bool is an int to Python but never a number here.
        numeric = expected is float and isinstance(value, int)
        if isinstance(value, bool) or not (isinstance(value, expected) or numeric):
            kind = {float: "a number", int: "an integer", str: "a string"}[expected]
            raise ConfigError(f"[gateway] {name} must be {kind}")
        if expected is not str and value < 0:
            raise ConfigError(f"[gateway] {name} must not be negative")
    if settings_table.get("response_store"):
        settings_table = {**settings_table, "response_store": str(base / settings_table["response_store"])}
    settings = GatewaySettings(**settings_table)
    return GatewayConfig(DatabaseConfig(_database_url(url, base)), tuple(upstreams), settings, nodes)


def parse_trusted_keys(keys: object) -> tuple[str, ...]:
    """``[nodes] trusted``, each key checked to be a 32-byte Ed25519 key in base64."""
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise ConfigError("[nodes] trusted must be a list of base64 Ed25519 public keys")
    for key in keys:
        try:
            decode_public_key(key)
        except ValueError as exc:
            raise ConfigError(f"[nodes] trusted: {key!r}: {exc}") from None
    return tuple(key.strip() for key in keys)


def _nodes_config(table: object) -> NodesConfig | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError("[nodes] must be a table")
    unknown = set(table) - set(NodesConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"[nodes] has unknown settings: {', '.join(sorted(unknown))}")
    durations: dict[str, float] = {}
    for name in ("heartbeat_timeout", "max_clock_skew"):
        if name in table:
            value = table[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"[nodes] {name} must be a positive number of seconds")
            durations[name] = float(value)
    return NodesConfig(trusted=parse_trusted_keys(table.get("trusted", [])), **durations)


def load_config(path: Path | str) -> GatewayConfig:
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return replace(parse_config(data, path.parent), path=path)
