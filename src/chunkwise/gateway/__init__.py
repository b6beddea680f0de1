"""``chunkwise gateway``: keys, limits, a usage ledger and failover in front of OpenAI-compatible servers.

The request path costs one database statement (admission) and, per chunk, one small msgspec decode: the
upstream's SSE bytes pass through as they came.
"""

from __future__ import annotations

from ._app import Gateway, GatewayApp, create_gateway_app
from ._config import (
    ConfigError,
    DatabaseConfig,
    GatewayConfig,
    GatewaySettings,
    NodesConfig,
    UpstreamConfig,
    load_config,
)
from ._http import GatewayHttpProtocol
from ._keys import KeyRecord
from ._ledger import Store, UsageRow, UsageSummary, open_store
from ._trust import edit_trusted_keys, read_trusted_keys

__all__ = [
    "ConfigError",
    "DatabaseConfig",
    "Gateway",
    "GatewayApp",
    "GatewayConfig",
    "GatewayHttpProtocol",
    "GatewaySettings",
    "KeyRecord",
    "NodesConfig",
    "Store",
    "UpstreamConfig",
    "UsageRow",
    "UsageSummary",
    "create_gateway_app",
    "edit_trusted_keys",
    "load_config",
    "open_store",
    "read_trusted_keys",
]
