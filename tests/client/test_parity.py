"""Sync/async parity: every scenario gives the same chunks, text, completion and error through both clients."""

from __future__ import annotations

from typing import Any

import pytest

import chunkwise

from .fault_server import FaultServer
from .harness import How, run

SHORT = chunkwise.Timeouts(connect=2, first_chunk=0.3, idle=0.3)
FAST = {"backoff": chunkwise.Backoff(initial=0.01, maximum=0.02)}

SCENARIOS: list[tuple[str, How, dict[str, Any]]] = [
    ("ok", "chunks", {}),
    ("ok", "text", {}),
    ("ok", "final", {}),
    ("ok", "unstreamed", {}),
    ("one_write", "chunks", {}),
    ("crlf_split", "chunks", {}),
    ("no_done", "chunks", {}),
    ("truncated", "chunks", {}),
    ("cut_short", "chunks", {}),
    ("reset_mid_stream", "chunks", {}),
    ("reset_twice", "chunks", {"client": FAST}),
    ("garbage", "chunks", {}),
    ("error_mid_stream", "chunks", {}),
    ("error_mid_stream", "final", {}),
    ("keepalive_after_first", "chunks", {"timeout": SHORT}),
    ("keepalive_only", "chunks", {"timeout": SHORT}),
    ("slow_first_byte", "unstreamed", {"timeout": SHORT}),
    ("retry_after_ms", "text", {}),
    ("unavailable_then_ok", "unstreamed", {}),
    ("bad_request", "chunks", {}),
    ("server_error_text", "unstreamed", {"max_retries": 0}),
    ("error_json_with_200", "chunks", {}),
]


@pytest.mark.parametrize(("scenario", "how", "options"), SCENARIOS, ids=[f"{s}-{h}" for s, h, _ in SCENARIOS])
def test_sync_and_async_agree(fault_server: FaultServer, scenario: str, how: How, options: dict[str, Any]) -> None:
    sync = run("sync", fault_server.base_url(scenario), how, **options)
    asynchronous = run("async", fault_server.base_url(scenario), how, **options)

    assert sync.signature() == asynchronous.signature()
    # Error messages may differ only in the repr of the transport exception they quote.
    quotes_transport = (
        isinstance(sync.error, chunkwise.IncompleteStreamError) or type(sync.error) is chunkwise.APIConnectionError
    )
    if not quotes_transport:
        assert str(sync.error) == str(asynchronous.error)
