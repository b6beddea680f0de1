"""``chunkwise gateway``, ``chunkwise keys`` and ``chunkwise usage`` as a user runs them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from chunkwise.cli import main
from chunkwise.cli._gateway import parse_since
from chunkwise.gateway import ConfigError, load_config
from tests.client.servers import free_port
from tests.server.conftest import MODEL, RunningServer

from .conftest import gateway_process


def write_config(tmp_path: Path, upstream_url: str, extra: str = "") -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""{extra}
[database]
url = "sqlite:///gateway.db"

[[upstreams]]
name = "a"
url = "{upstream_url}/v1"
models = ["{MODEL}"]
"""
    )
    return path


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_keys_create_list_revoke_and_usage(upstream: RunningServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, upstream.url)
    output = cli("keys", "create", "--config", str(config), "--name", "ci", "--model", MODEL, "--rpm", "5")
    key = output.splitlines()[-1]
    assert key.startswith("cwk-") and len(key) > 40
    assert (tmp_path / "gateway.db").exists()  # relative to the config file
    listing = cli("keys", "list", "--config", str(config))
    assert "\tci\t" in listing and f"\t{MODEL}\t5\t-\t-\t0\tactive" in listing
    assert key not in listing
    [record] = [json.loads(line) for line in cli("keys", "list", "--config", str(config), "--json").splitlines()]

    from .conftest import run_gateway

    with run_gateway(load_config(config)) as gateway:
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
            headers={"authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert response.status_code == 200
        gateway.usage_rows(1)
    [summary] = json.loads(cli("usage", "--config", str(config), "--json"))
    assert summary["key_id"] == record["id"] and summary["requests"] == 1 and summary["completion_tokens"] == 2
    assert json.loads(cli("usage", "--config", str(config), "--json", "--since", "2099-01-01")) == []
    table = cli("usage", "--config", str(config), "--since", "1h")
    assert "ci" in table and MODEL in table
    assert cli("keys", "revoke", "--config", str(config), record["id"]).strip() == "revoked 1 key"
    result = CliRunner().invoke(main, ["keys", "revoke", "--config", str(config), record["id"]])
    assert result.exit_code == 1 and "no active key" in result.output


def test_parse_since() -> None:
    assert parse_since("30m", now=10_000.0) == 10_000.0 - 1800
    assert parse_since("2d", now=1e6) == 1e6 - 2 * 86400
    assert parse_since("2026-12-01T00:00:00+00:00") == 1_796_083_200.0
    with pytest.raises(Exception, match="neither"):
        parse_since("yesterday")


def test_config_errors_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[database]\nurl = 'mysql://x'\n[[upstreams]]\nname='a'\nurl='http://x/v1'\n")
    with pytest.raises(ConfigError, match="sqlite:///, postgresql://"):
        load_config(path)
    path.write_text("[[upstreams]]\nname='a'\nurl='http://x/v1'\napi_key_env='CHUNKWISE_TEST_UNSET_KEY'\n")
    with pytest.raises(ConfigError, match="CHUNKWISE_TEST_UNSET_KEY"):
        load_config(path)
    path.write_text("[gateway]\nport = 1\nbogus = 2\n[[upstreams]]\nname='a'\nurl='http://x/v1'\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_config(path)
    path.write_text("[gateway]\nport = 'eighty'\n[[upstreams]]\nname='a'\nurl='http://x/v1'\n")
    with pytest.raises(ConfigError, match="port must be an integer"):
        load_config(path)
    path.write_text("[gateway]\nejection_cooldown = -1\n[[upstreams]]\nname='a'\nurl='http://x/v1'\n")
    with pytest.raises(ConfigError, match="must not be negative"):
        load_config(path)
    path.write_text("[gateway]\nhealth_check_interval = 2\n[[upstreams]]\nname='a'\nurl='http://x/v1'\n")
    assert load_config(path).settings.health_check_interval == 2
    path.write_text("[gateway]\nresponse_store = 'responses.db'\n[[upstreams]]\nname='a'\nurl='http://x/v1'\n")
    assert load_config(path).settings.response_store == str(tmp_path / "responses.db")
    path.write_text("not toml [")
    result = CliRunner().invoke(main, ["keys", "list", "--config", str(path)])
    assert result.exit_code == 1 and "not valid TOML" in result.output


def test_the_gateway_command_serves_until_interrupted(upstream: RunningServer, tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, upstream.url, "[gateway]\nhealth_check_interval = 1.0\n")
    key = cli("keys", "create", "--config", str(config), "--name", "cmd").splitlines()[-1]
    with gateway_process(config, port) as process:
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"authorization": f"Bearer {key}"}).json()
        assert [entry["id"] for entry in models["data"]] == [MODEL]
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0


def test_a_missing_gateway_dependency_is_named_with_the_extra_that_brings_it(tmp_path: Path) -> None:
    # A fresh interpreter in which httptools cannot be imported (uninstalling it here would break the suite).
    config = write_config(tmp_path, "http://127.0.0.1:9/v1")
    code = (
        "import sys; sys.modules['httptools'] = None; from chunkwise.cli import main; "
        f"main(['keys', 'list', '--config', {str(config)!r}])"
    )
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1
    assert "the gateway needs httptools" in finished.stderr
    assert "pip install 'chunkwise[gateway]'" in finished.stderr
