"""``chunkwise serve``: its options, and a real run that answers the curl line it prints."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from chunkwise.cli import main
from chunkwise.engine import default_model_path
from tests.client.servers import free_port, subprocess_server

from .conftest import MODEL


def test_help_lists_every_option() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    for option in [
        "--host",
        "--port",
        "--model",
        "--model-id",
        "--api-key",
        "--n-ctx",
        "--n-threads",
        "--queue-size",
        "--keepalive-interval",
        "--max-body-size",
        "--cors-origin",
        "--log-level",
        "--access-log",
        "--embedding-model",
        "--embeddings",
        "--response-store",
        "--response-store-size",
    ]:
        assert option in result.output
    assert "CHUNKWISE_API_KEY" in result.output
    assert "serve" in CliRunner().invoke(main, ["--help"]).output


def test_a_missing_model_file_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["serve", "--model", "/nonexistent/model.gguf"])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_a_key_file_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    # Before anything is loaded: the failure must be reported, not crash on the cleanup of what never started.
    (tmp_path / "file").write_bytes(b"")
    result = CliRunner().invoke(main, ["serve", "--node-key-file", str(tmp_path / "file" / "node.pem")])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: FileExistsError")


def test_an_embedding_model_needs_the_embeddings_route_and_no_ray(tmp_path: Path) -> None:
    model = tmp_path / "e.gguf"
    model.write_bytes(b"")
    for extra in (["--no-embeddings"], ["--ray", "auto"]):
        result = CliRunner().invoke(main, ["serve", "--embedding-model", str(model), *extra])
        assert result.exit_code == 2, result.output
        assert "--embedding-model is served only" in result.output


@pytest.mark.engine
def test_serve_with_an_embedding_model_of_its_own(tmp_path: Path) -> None:
    model = tmp_path / "my-embedder.gguf"
    model.symlink_to(default_model_path())
    port = free_port()
    args = ["-m", "chunkwise", "serve", "--port", str(port), "--n-ctx", "256", "--n-threads", "1"]
    with subprocess_server([*args, "--embedding-model", str(model)], port=port, health_path="/health") as url:
        assert [entry["id"] for entry in httpx.get(f"{url}/v1/models").json()["data"]] == [MODEL, "my-embedder"]
        answer = httpx.post(f"{url}/v1/embeddings", json={"model": "my-embedder", "input": ["a", "b"]}, timeout=60)
        assert answer.status_code == 200 and len(answer.json()["data"]) == 2


@pytest.mark.engine
@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_serve_prints_a_working_curl_line_and_stops_on_ctrl_c() -> None:
    env = {**os.environ, "COLUMNS": "250", "CHUNKWISE_API_KEY": "sk-cli-test"}
    process = subprocess.Popen(
        # One thread: on a shared machine llama.cpp's spinning pool slows down badly with fewer free cores than threads.
        [sys.executable, "-m", "chunkwise", "serve", "--port", "0", "--n-ctx", "512", "--n-threads", "1"]
        + ["--no-access-log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    output: list[str] = []
    try:
        deadline = time.monotonic() + 90
        curl_line = None
        while time.monotonic() < deadline and curl_line is None:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.strip().startswith("curl "):
                curl_line = line.strip()
        assert curl_line is not None, "".join(output)
        banner = "".join(output)
        assert MODEL in banner
        assert re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert re.search(r"Playground: http://127\.0\.0\.1:\d+/ ", banner)
        assert "/v1/responses" in banner and "/v1/messages" in banner
        assert "$CHUNKWISE_API_KEY" in curl_line, "the key itself is never printed"
        curl = subprocess.run(["bash", "-c", curl_line], capture_output=True, text=True, timeout=60, env=env)
        assert curl.returncode == 0, curl.stderr
        assert '"chat.completion.chunk"' in curl.stdout
        assert curl.stdout.rstrip().endswith("data: [DONE]")
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0, "".join(output) + rest
    assert "Stopped." in rest
