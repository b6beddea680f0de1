"""The Vercel AI SDK's Responses API and Anthropic providers, unmodified, against the real server and engine."""

from __future__ import annotations

import pytest

from tests.vercel_ai_sdk import DIALECTS, check_text, check_tool_call, drive

from .conftest import MODEL, RunningServer


@pytest.mark.parametrize("dialect", DIALECTS)
def test_streams_text(server: RunningServer, dialect: str) -> None:
    check_text(drive(server.url, MODEL, dialect, "text"))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_streams_a_tool_call(server: RunningServer, dialect: str) -> None:
    check_tool_call(drive(server.url, MODEL, dialect, "tool"))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_generates_a_whole_answer(server: RunningServer, dialect: str) -> None:
    # The Anthropic provider refuses a text block whose `citations` is null, as the server once sent it.
    check_text(drive(server.url, MODEL, dialect, "whole"), streamed=False)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_continues_a_conversation(server: RunningServer, dialect: str) -> None:
    # The OpenAI provider sends its earlier answer back as an `item_reference` to the stored response.
    report = drive(server.url, MODEL, dialect, "turns")
    check_text(report)
    assert len(report["turns"]) == 2 and all(turn.strip() for turn in report["turns"])
