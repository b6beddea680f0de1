"""Nodes that join a gateway (issue 19, items 4 and 5): ``chunkwise serve --join`` and ``POST /v1/nodes``.

Real parts throughout: the gateway under uvicorn, ``chunkwise serve`` subprocesses that join it on their own,
or the session's in-process server registered by the test with a registration it signs itself (to send
exactly one, a forged one or a replayed one). The gateway's config file is a real TOML file, so that its
trust list can change under it.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import openai
import pytest
from click.testing import CliRunner
from openai.types.chat import ChatCompletionMessageParam

import chunkwise
from chunkwise.cli import main
from chunkwise.gateway import ConfigError, edit_trusted_keys, load_config, read_trusted_keys
from chunkwise.registration import NodeRegistration, signed_registration
from chunkwise.server import load_signer
from chunkwise.signing import ChainVerifier, Signer, blake2b256, split_signed_json, sui_address
from tests.client.servers import free_port
from tests.secure.test_atoma_sdks import ATOMA_PYTHON, run_driver
from tests.server.conftest import MODEL, RunningServer
from tests.server.test_concurrency import NO_EOS

from .conftest import KillableUpstream, RunningGateway, create_key, run_gateway, serve_process

ATOMA_DRIVER = Path(__file__).parents[1] / "secure" / "atoma_py" / "drive.py"

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]


def write_config(tmp_path: Path, trusted: list[str], heartbeat_timeout: float = 5.0) -> Path:
    """A gateway config with no [[upstreams]]: only nodes that join serve it."""
    path = tmp_path / "gateway.toml"
    keys = ", ".join(f'"{key}"' for key in trusted)
    path.write_text(
        "# a gateway fed by nodes only\n"
        f'[database]\nurl = "sqlite:///{tmp_path / "ledger.db"}"\n\n'
        "[gateway]\nhealth_check_interval = 0\nejection_cooldown = 30\n\n"
        f"[nodes]\ntrusted = [{keys}]\nheartbeat_timeout = {heartbeat_timeout}\nmax_clock_skew = 30\n"
    )
    return path


@contextmanager
def gateway_for(path: Path, port: int = 0) -> Iterator[RunningGateway]:
    with run_gateway(load_config(path), port) as running:
        yield running


def registration(signer: Signer, url: str, *, name: str = "n1", timestamp: int | None = None) -> bytes:
    return signed_registration(
        signer,
        NodeRegistration(
            node_small_id=7,
            public_address=sui_address(signer.public_key),
            country="NL",
            name=name,
            url=url,
            timestamp=int(time.time() * 1000) if timestamp is None else timestamp,
        ),
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``condition()`` held."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"{what} did not happen within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - start


def joined(gateway: RunningGateway) -> set[str]:
    return {node.upstream.name for node in gateway.gateway.nodes.nodes.values() if node.upstream.models}


def assert_openai_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]


@contextmanager
def joining_node(gateway_url: str, key_file: Path, name: str) -> Iterator[KillableUpstream]:
    options = ["--signing-key-file", str(key_file), "--join", gateway_url, "--node-name", name]
    with serve_process(*options, "--n-threads", "1", "--heartbeat-interval", "0.3") as node:
        yield node


@dataclass
class Pool:
    """A gateway with no [[upstreams]], a key for it, and ``chunkwise serve`` nodes that joined it."""

    gateway: RunningGateway
    key: str
    signers: dict[str, Signer]
    nodes: dict[str, KillableUpstream]


@contextmanager
def joined_pool(tmp_path: Path, *names: str) -> Iterator[Pool]:
    signers = {name: load_signer(tmp_path / f"{name}.pem")[0] for name in names}
    path = write_config(tmp_path, [signer.public_key_base64 for signer in signers.values()])
    with gateway_for(path) as gateway, ExitStack() as stack:
        key = create_key(gateway.config)
        nodes = {name: stack.enter_context(joining_node(gateway.url, tmp_path / f"{name}.pem", name)) for name in names}
        wait_until(lambda: joined(gateway) == set(names), 60, "the nodes joining")
        yield Pool(gateway, key, signers, nodes)


@pytest.mark.engine
def test_two_nodes_join_a_gateway_without_upstreams_and_serve_it(tmp_path: Path) -> None:
    with joined_pool(tmp_path, "a", "b") as pool:
        gateway, key, signers = pool.gateway, pool.key, pool.signers
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
        assert [model.id for model in client.models.list()] == [MODEL]

        # Chat, streamed and not: least-outstanding routing takes turns, so both nodes answer.
        for _ in range(2):
            answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8)
            assert answer.choices[0].message.content
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8, stream=True)
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        embedding = client.embeddings.create(model=MODEL, input=["one", "two"])
        assert len(embedding.data) == 2 and len(embedding.data[0].embedding) > 0

        # Confidential chat: the gateway relays the lock and the envelope, and never holds the plaintext.
        with chunkwise.Client(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as secure:
            secret = secure.confidential.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8)
            assert secret.choices[0].message.content
            with secure.confidential.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=8, stream=True
            ) as secret_stream:
                assert "".join(chunk.choices[0].delta.content or "" for chunk in secret_stream if chunk.choices)

        # The official Atoma Python SDK, unmodified: confidential chat and embeddings through the gateway (where
        # it is installed; CI's set-up installs it).
        if ATOMA_PYTHON.exists() or os.environ.get("CI"):
            drive = [str(ATOMA_PYTHON), str(ATOMA_DRIVER), gateway.url, MODEL]
            assert run_driver([*drive, "create", key])["content"]
            sealed = run_driver([*drive, "confidential_embeddings", key])
            assert len(sealed["embeddings"]) == 2 and len(sealed["embeddings"][0]) == 576

        # A signed answer passed through verifies against the key of the node that signed it.
        body = msgspec.json.encode({"model": MODEL, "messages": MESSAGES, "max_tokens": 8})
        signed = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            content=body,
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
            timeout=60,
        )
        assert signed.status_code == 200, signed.text
        _, signature, _ = split_signed_json(signed.content)
        assert signature is not None
        signer_key = base64.b64decode(signature)[65:]
        assert signer_key in {signer.public_key for signer in signers.values()}
        ChainVerifier(blake2b256(body), signer_key, require_chain=True).check_signed_json(signed.content)

        rows = gateway.usage_rows(7)
        assert {row["upstream"] for row in rows} == {"a", "b"}
        assert all(row["status"] == 200 for row in rows)


@pytest.mark.engine
def test_a_node_killed_mid_stream_gives_an_error_frame_and_new_requests_fail_over(tmp_path: Path) -> None:
    with joined_pool(tmp_path, "doomed", "survivor") as pool:
        gateway, key, signers, nodes = pool.gateway, pool.key, pool.signers, pool.nodes
        # Route the stream to the doomed node: the survivor looks busy.
        survivor = next(node for node in gateway.gateway.nodes.nodes.values() if node.upstream.name == "survivor")
        doomed = next(node for node in gateway.gateway.nodes.nodes.values() if node.upstream.name == "doomed")
        survivor.upstream.outstanding += 100
        request = {"model": MODEL, "messages": MESSAGES, "max_tokens": 400, "stream": True, "logit_bias": NO_EOS}
        headers = {"authorization": f"Bearer {key}"}
        with httpx.stream(
            "POST", f"{gateway.url}/v1/chat/completions", json=request, headers=headers, timeout=60
        ) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert '"content"' in first or '"role"' in first
            nodes["doomed"].kill()
            rest = list(lines)
        survivor.upstream.outstanding -= 100
        assert any('"upstream_failed"' in line for line in rest), rest[-3:]
        assert [line for line in rest if line][-1] == "data: [DONE]"

        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
        for _ in range(2):
            answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8)
            assert answer.choices[0].message.content
        # The killed node is still in the pool (its heartbeat has not lapsed). Either one of the two requests went
        # to it first, met a refused connection and was sent on to the survivor, or a heartbeat that the node
        # sent just before it died made the gateway check it and mark it unhealthy, so no request went to it.
        refused = gateway.metric("chunkwise_gateway_upstream_errors_total", upstream="doomed", kind="connect")
        assert refused >= 1 or not doomed.upstream.healthy
        # With one node left, a client that pins its signing key verifies a confidential answer end to end.
        with chunkwise.Client(
            base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, verify_key=signers["survivor"].public_key
        ) as secure:
            assert secure.confidential.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8).choices
        rows = gateway.usage_rows(4)
        assert [row["upstream"] for row in rows if row["outcome"] == "ok"] == ["survivor"] * 3


def test_untrusted_forged_replayed_and_malformed_registrations_are_refused(tmp_path: Path) -> None:
    trusted, stranger = Signer(), Signer()
    path = write_config(tmp_path, [trusted.public_key_base64])
    url = "http://127.0.0.1:9/"  # never reached: every registration here is refused before that
    with gateway_for(path) as gateway:
        endpoint = f"{gateway.url}/v1/nodes"

        assert_openai_error(httpx.post(endpoint, content=registration(stranger, url)), 401, "untrusted_node_key")

        forged = msgspec.json.decode(registration(trusted, url))
        forged["data"]["url"] = "http://attacker.example/"  # the signature covered the old URL
        assert_openai_error(httpx.post(endpoint, json=forged), 401, "invalid_signature")
        other = msgspec.json.decode(registration(stranger, url))
        # A stranger's signature with the trusted key put in its place.
        raw = base64.b64decode(other["signature"])
        other["signature"] = base64.b64encode(raw[:65] + trusted.public_key).decode()
        other["data"]["public_address"] = sui_address(trusted.public_key)
        assert_openai_error(httpx.post(endpoint, json=other), 401, "invalid_signature")

        old = registration(trusted, url, timestamp=int(time.time() * 1000) - 120_000)
        assert_openai_error(httpx.post(endpoint, content=old), 401, "stale_registration")

        wrong_address = signed_registration(
            trusted,
            NodeRegistration(node_small_id=1, public_address=sui_address(stranger.public_key), country="NL"),
        )
        assert_openai_error(httpx.post(endpoint, content=wrong_address), 401, "address_mismatch")

        for body in (b"", b"[]", b'{"data": {}, "signature": "x"}', b'{"data": 1}', b"{" * 10_000):
            response = httpx.post(endpoint, content=body)
            assert response.status_code == 400, (body[:40], response.text)
            assert response.json()["error"]["message"]

        # The replay: a registration that was accepted once is refused the second time.
        first = registration(trusted, "http://127.0.0.1:9/", name="n1")
        assert httpx.post(endpoint, content=first, timeout=30).json()["message"] == "Success"
        assert_openai_error(httpx.post(endpoint, content=first), 401, "replayed_registration")
        assert {node.upstream.name for node in gateway.gateway.nodes.nodes.values()} == {"n1"}


def test_atoma_shaped_registrations_answer_success_for_a_trusted_signer(tmp_path: Path) -> None:
    signer, stranger = Signer(), Signer()
    path = write_config(tmp_path, [signer.public_key_base64])
    with gateway_for(path) as gateway:
        data = {"node_small_id": 3, "public_address": sui_address(signer.public_key), "country": "DE"}
        # Atoma's signers hash serde_json's compact form of the struct, fields in this order; the body itself
        # may order and space them as its client likes (the Atoma SDKs sort them).
        signature = signer.sign_hash(blake2b256(msgspec.json.encode(data)))
        body = {"data": dict(sorted(data.items())), "signature": signature}
        response = httpx.post(f"{gateway.url}/v1/nodes", content=json.dumps(body))  # spaced: ", " and ": "
        assert response.status_code == 200 and response.json() == {"message": "Success"}
        assert not gateway.gateway.nodes.nodes  # nothing to route to: Atoma's shape has no URL
        if ATOMA_PYTHON.exists() or os.environ.get("CI"):  # CI's set-up installs the SDK
            request = json.dumps({"data": data, "signature": signature})
            assert run_driver([str(ATOMA_PYTHON), str(ATOMA_DRIVER), gateway.url, request, "nodes_create"]) == {
                "message": "Success"
            }

        tampered = {"data": {**data, "node_small_id": 4}, "signature": signature}
        assert_openai_error(httpx.post(f"{gateway.url}/v1/nodes", json=tampered), 401, "invalid_signature")
        foreign = {
            "data": {**data, "public_address": sui_address(stranger.public_key)},
            "signature": stranger.sign_hash(blake2b256(msgspec.json.encode(data))),
        }
        assert_openai_error(httpx.post(f"{gateway.url}/v1/nodes", json=foreign), 401, "untrusted_node_key")
        mismatched = {"data": {**data, "public_address": "0x" + "00" * 32}, "signature": signature}
        assert_openai_error(httpx.post(f"{gateway.url}/v1/nodes", json=mismatched), 401, "invalid_signature")
        assert_openai_error(httpx.post(f"{gateway.url}/v1/nodes", json={"data": data}), 400, "invalid_registration")


def test_a_gateway_without_nodes_refuses_registrations(sqlite_url: str, tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[database]\nurl = "{sqlite_url}"\n[[upstreams]]\nname = "a"\nurl = "http://127.0.0.1:9/v1"\n')
    with gateway_for(path) as gateway:
        assert_openai_error(httpx.post(f"{gateway.url}/v1/nodes", content=b"{}"), 404, "nodes_not_enabled")


@pytest.mark.engine
def test_a_node_that_stops_heartbeating_leaves_within_the_timeout(upstream: RunningServer, tmp_path: Path) -> None:
    signer = Signer()
    path = write_config(tmp_path, [signer.public_key_base64], heartbeat_timeout=1.0)
    with gateway_for(path) as gateway:
        key = create_key(gateway.config)
        sent = time.monotonic()
        answer = httpx.post(f"{gateway.url}/v1/nodes", content=registration(signer, upstream.url), timeout=30)
        answered = time.monotonic()
        assert answer.json() == {
            "message": "Success",
            "name": "n1",
            "healthy": True,
            "models": [MODEL],
            "heartbeat_timeout": 1.0,
        }
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
        assert client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4).choices
        wait_until(lambda: not gateway.gateway.nodes.nodes, 5, "the silent node leaving")
        left = time.monotonic()
        # The gateway heard the heartbeat between `sent` and `answered`; the node leaves the timeout after
        # that, give or take one sweep period (a quarter of the timeout) and scheduling slack.
        assert left - sent >= 1.0
        assert left - answered < 1.0 + 0.25 + 0.5
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
        # A heartbeat brings it back.
        httpx.post(f"{gateway.url}/v1/nodes", content=registration(signer, upstream.url), timeout=30)
        assert client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4).choices


@pytest.mark.engine
def test_nodes_cli_round_trip_and_a_running_gateway_follows_the_trust_list(
    upstream: RunningServer, tmp_path: Path
) -> None:
    signer = Signer()
    path = write_config(tmp_path, [])
    text_before = path.read_text()
    runner = CliRunner()
    key = signer.public_key_base64
    with gateway_for(path) as gateway:
        endpoint = f"{gateway.url}/v1/nodes"
        assert_openai_error(httpx.post(endpoint, content=registration(signer, upstream.url)), 401, "untrusted_node_key")

        result = runner.invoke(main, ["nodes", "allow", "--config", str(path), key])
        assert result.exit_code == 0, result.output
        assert runner.invoke(main, ["nodes", "list", "--config", str(path)]).output.split() == [key]
        assert load_config(path).nodes is not None
        # The rest of the file is as it was, comments included.
        assert path.read_text().startswith(text_before.split("trusted")[0])

        # No restart: the next registration reads the new list.
        assert httpx.post(endpoint, content=registration(signer, upstream.url), timeout=30).status_code == 200
        assert {node.upstream.name for node in gateway.gateway.nodes.nodes.values()} == {"n1"}

        result = runner.invoke(main, ["nodes", "revoke", "--config", str(path), key])
        assert result.exit_code == 0, result.output
        assert runner.invoke(main, ["nodes", "list", "--config", str(path)]).output.split() == []
        # The revoked node leaves the pool without waiting for its heartbeat to lapse.
        wait_until(lambda: not gateway.gateway.nodes.nodes, 3, "the revoked node leaving")
        assert_openai_error(httpx.post(endpoint, content=registration(signer, upstream.url)), 401, "untrusted_node_key")

    revoked_again = runner.invoke(main, ["nodes", "revoke", "--config", str(path), key])
    assert revoked_again.exit_code != 0 and "is not trusted" in revoked_again.output
    bad = runner.invoke(main, ["nodes", "allow", "--config", str(path), "not-a-key"])
    assert bad.exit_code != 0 and "32 bytes" in bad.output


@pytest.mark.engine
def test_a_node_whose_gateway_is_down_keeps_serving_and_joins_once_it_is_up(tmp_path: Path) -> None:
    signer = load_signer(tmp_path / "node.pem")[0]
    path = write_config(tmp_path, [signer.public_key_base64])
    port = free_port()
    with joining_node(f"http://127.0.0.1:{port}", tmp_path / "node.pem", "early") as node:
        # Nothing listens at the gateway's address yet: the node's registrations fail, and it serves anyway.
        time.sleep(1.0)
        direct = httpx.post(
            f"{node.url}/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, "max_tokens": 4}, timeout=60
        )
        assert direct.status_code == 200, direct.text
        assert node.process.poll() is None
        with gateway_for(path, port) as gateway:
            # Retries back off to at most the heartbeat interval (0.3 s), so it joins soon after.
            wait_until(lambda: joined(gateway) == {"early"}, 10, "the node joining")
            key = create_key(gateway.config)
            client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
            assert client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4).choices


def test_the_trust_list_edit_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    first, second = Signer().public_key_base64, Signer().public_key_base64
    path = tmp_path / "gateway.toml"
    original = (
        "# top comment\n"
        '[database]\nurl = "sqlite:///g.db"  # the ledger\n\n'
        "[nodes]   # joined nodes\n"
        f'trusted = [ # keys\n  "{first}",  # the first node, ] not the end\n]\n'
        "heartbeat_timeout = 7\n\n"
        '[[upstreams]]\nname = "a"\nurl = "http://127.0.0.1:9/v1"\n'
    )
    path.write_text(original)
    assert edit_trusted_keys(path, lambda keys: [*keys, second]) == (first, second)
    text = path.read_text()
    assert text.startswith("# top comment\n") and "[nodes]   # joined nodes\n" in text
    assert text.endswith('heartbeat_timeout = 7\n\n[[upstreams]]\nname = "a"\nurl = "http://127.0.0.1:9/v1"\n')
    config = load_config(path)
    assert config.nodes is not None and config.nodes.trusted == (first, second)
    assert config.nodes.heartbeat_timeout == 7.0 and [upstream.name for upstream in config.upstreams] == ["a"]
    assert edit_trusted_keys(path, lambda keys: [key for key in keys if key != first]) == (second,)
    assert read_trusted_keys(path) == (second,)

    # A form the editor cannot rewrite in place is refused, and the file is left as it was.
    dotted = f'nodes.trusted = ["{first}"]\n[database]\nurl = "sqlite:///g.db"\n'
    path.write_text(dotted)
    with pytest.raises(ConfigError, match="safely"):
        edit_trusted_keys(path, lambda keys: [*keys, second])
    assert path.read_text() == dotted


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ('trusted = ["abc"]', "trusted"),
        ("trusted = 1", "trusted"),
        ("trusted = []\nheartbeat_timeout = 0", "heartbeat_timeout"),
        ('trusted = []\nmax_clock_skew = "1"', "max_clock_skew"),
        ("trusted = []\nunknown = 1", "unknown"),
    ],
)
def test_bad_nodes_tables_are_refused(tmp_path: Path, nodes: str, message: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[database]\nurl = "sqlite:///g.db"\n[nodes]\n{nodes}\n')
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    path.write_text('[database]\nurl = "sqlite:///g.db"\n')
    with pytest.raises(ConfigError, match=r"\[\[upstreams\]\] table, or a \[nodes\] table"):
        load_config(path)
