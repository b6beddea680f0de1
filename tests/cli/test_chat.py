"""``chunkwise chat`` and ``chunkwise models`` against a real server (real engine, real uvicorn on loopback).

Greedy answers are compared with what the server itself answers to the same request, so a CLI that
dropped, reordered or garbled a token would fail.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest
from click.testing import CliRunner

from chunkwise.accumulate import accumulate
from chunkwise.cli import main
from chunkwise.engine import DEFAULT_MODEL_ID, LlamaCppEngine
from chunkwise.server import ServerSettings, create_app
from chunkwise.types import ChatCompletionChunk
from tests.server.conftest import RunningServer, serve

pytestmark = [pytest.mark.engine, pytest.mark.timeout(180)]

MAX_TOKENS = "12"


@pytest.fixture(scope="module")
def server(engine: LlamaCppEngine) -> Iterator[RunningServer]:
    with serve(create_app(engine, ServerSettings())) as running:
        yield running


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHUNKWISE_BASE_URL", "CHUNKWISE_API_KEY", "OPENAI_API_KEY", "ATOMASDK_BEARER_AUTH"):
        monkeypatch.delenv(name, raising=False)


def server_answer(server: RunningServer, prompt: str, system: str | None = None) -> str:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    body = {"model": DEFAULT_MODEL_ID, "messages": messages, "temperature": 0, "max_tokens": int(MAX_TOKENS)}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
    response.raise_for_status()
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


def run(server: RunningServer, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main,
        ["chat", "--base-url", f"{server.url}/v1", "--temperature", "0", "--max-tokens", MAX_TOKENS, *args],
        input=stdin,
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_one_shot_prompt_prints_the_answer_and_stats(server: RunningServer) -> None:
    code, out, err = run(server, "Name a color.")
    assert code == 0
    assert out == server_answer(server, "Name a color.") + "\n"
    assert "usage" in err and "first token" in err and "tokens/s" in err


def test_piped_stdin_is_the_prompt(server: RunningServer) -> None:
    code, out, _ = run(server, stdin="Name a fruit.\n")
    assert code == 0
    assert out == server_answer(server, "Name a fruit.") + "\n"


def test_system_prompt(server: RunningServer) -> None:
    code, out, _ = run(server, "--system", "You only speak French.", "Hello")
    assert code == 0
    assert out == server_answer(server, "Hello", system="You only speak French.") + "\n"


def test_json_writes_raw_chunks_as_lines(server: RunningServer) -> None:
    code, out, _ = run(server, "--json", "Name a planet.")
    assert code == 0
    chunks = [msgspec.json.decode(line, type=ChatCompletionChunk) for line in out.splitlines()]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert accumulate(chunks).choices[0].message.content == server_answer(server, "Name a planet.")


def test_models_lists_the_served_model(server: RunningServer) -> None:
    result = CliRunner().invoke(main, ["models", "--base-url", f"{server.url}/v1"])
    assert result.exit_code == 0
    assert result.stdout.split("\t")[0] == DEFAULT_MODEL_ID


def test_no_server_gives_one_clear_line() -> None:
    result = CliRunner().invoke(main, ["chat", "--base-url", "http://127.0.0.1:9/v1", "hello"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no chunkwise server at http://127.0.0.1:9/v1" in lines[0] and "--local" in lines[0]
    assert "Traceback" not in result.output


def test_local_runs_the_embedded_engine_without_a_server(server: RunningServer) -> None:
    result = CliRunner().invoke(
        main, ["chat", "--local", "--temperature", "0", "--max-tokens", MAX_TOKENS, "Name an animal."]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == server_answer(server, "Name an animal.") + "\n"
    assert "usage" in result.stderr


def read_until(fd: int, marker: bytes, timeout: float = 60) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{marker!r} did not appear; got {seen!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
    return seen


def test_repl_through_a_pseudo_terminal(server: RunningServer) -> None:
    controller, terminal = pty.openpty()
    command = [
        sys.executable,
        "-m",
        "chunkwise",
        "chat",
        "--base-url",
        f"{server.url}/v1",
        "--temperature",
        "0",
        "--max-tokens",
        MAX_TOKENS,
    ]
    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True)
    os.close(terminal)
    try:
        assert b"/reset" in read_until(controller, b">>> ")
        os.write(controller, b"Name a color.\n")
        answer = read_until(controller, b">>> ")
        assert server_answer(server, "Name a color.").encode() in answer.replace(b"\r\n", b"\n")
        assert b"usage" in answer
        os.write(controller, b"/reset\n")
        assert b"conversation cleared" in read_until(controller, b">>> ")
        os.write(controller, b"/exit\n")
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
