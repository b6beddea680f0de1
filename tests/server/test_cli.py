"""``chunkwise serve``: its options, and a real run that answers the curl line it prints."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from chunkwise.cli import main

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
