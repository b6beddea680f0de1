"""The Vercel AI SDK (npm ``ai`` with ``@ai-sdk/openai`` on the Responses API and ``@ai-sdk/anthropic``),
unmodified, run under node by ``server/vercel_ai/drive.mjs``: checks that the server's and the gateway's tests
both run. ``scripts/setup --test`` installs the SDK from its package-lock.json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

DRIVER_DIR = Path(__file__).parent / "server" / "vercel_ai"
DIALECTS = ["responses", "messages"]


def drive(url: str, model: str, dialect: str, case: str, api_key: str = "not-checked") -> dict[str, Any]:
    """What the SDK made of one ``case`` against ``url`` (see drive.mjs), or a failed test with node's stderr."""
    node = shutil.which("node")
    if node is None or not (DRIVER_DIR / "node_modules" / "ai").exists():
        reason = "node or the Vercel AI SDK is not installed: run scripts/setup --test"
        # CI's set-up must install them, so there a missing SDK fails rather than skips.
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    done = subprocess.run(
        [node, str(DRIVER_DIR / "drive.mjs"), url, model, dialect, case],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "CHUNKWISE_API_KEY": api_key},
    )
    assert done.returncode == 0, f"the Vercel AI SDK failed on {dialect} {case}:\n{done.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def check_usage(report: dict[str, Any]) -> None:
    usage = report["usage"]
    assert usage["inputTokens"] > 0
    assert usage["outputTokens"] > 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]


def check_text(report: dict[str, Any], *, streamed: bool = True) -> None:
    """A plain answer: text, ``stop`` (the prompt is answered well within the limit) and the usage."""
    assert report["text"].strip()
    assert report["finishReason"] == "stop"
    assert report["toolCalls"] == []
    assert report["warnings"] == []
    check_usage(report)
    if streamed:
        parts = report["parts"]
        # The text came as it was made, in several deltas, between the stream's start and finish.
        assert parts[0] == "start" and parts[-1] == "finish"
        assert parts.count("text-delta") > 1
        assert report["streamedText"] == report["text"]


def check_tool_call(report: dict[str, Any]) -> None:
    """The forced call of ``get_weather``, streamed as input deltas and ending the answer."""
    [call] = report["toolCalls"]
    assert call["toolName"] == "get_weather"
    assert call["toolCallId"]
    assert isinstance(call["input"], dict)
    assert call["input"].get("city") in ("Paris", "Tokyo", "Lima")
    assert report["finishReason"] == "tool-calls"
    parts = report["parts"]
    assert parts.index("tool-input-start") < parts.index("tool-input-delta") < parts.index("tool-call")
    check_usage(report)
