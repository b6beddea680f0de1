"""openai-python's Responses API and the anthropic SDK, unmodified, against the real server and engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.sdk_dialects import MESSAGES_CHECKS, RESPONSES_CHECKS

from .conftest import MODEL, RunningServer


@pytest.fixture(scope="module")
def anthropic_client(server: RunningServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.url, api_key="not-checked", max_retries=0, timeout=60) as client:
        yield client


@pytest.mark.parametrize("check", RESPONSES_CHECKS, ids=lambda check: check.__name__)
def test_responses(client: openai.OpenAI, check: Callable[[openai.OpenAI, str], Any]) -> None:
    check(client, MODEL)


@pytest.mark.parametrize("check", MESSAGES_CHECKS, ids=lambda check: check.__name__)
def test_messages(anthropic_client: anthropic.Anthropic, check: Callable[[anthropic.Anthropic, str], Any]) -> None:
    check(anthropic_client, MODEL)
