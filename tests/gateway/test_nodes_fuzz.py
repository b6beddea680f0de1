"""Fuzzing the gateway's node endpoints: ``POST /v1/nodes``, ``POST /v1/nodes/lock`` and the confidential routes.

Bodies are drawn from arbitrary JSON and from near-valid registrations, lock requests and envelopes, some
signed by the trusted key (so that they reach the checks after the signature) and some sealed to the real
node's key (so that they reach the node). Whatever arrives, the answer is never a 5xx, every error is in
the OpenAI shape, and the gateway still answers afterwards. The node is the session's real server.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from chunkwise.signing import Signer, blake2b256, sui_address
from tests.server.conftest import MODEL, RunningServer
from tests.server.test_fuzz import FUZZ_SETTINGS

from .conftest import RunningGateway, create_key
from .test_nodes import gateway_for, registration, write_config

#: The server's fuzz settings, with more examples: most drawn bodies stop at an early check.
NODE_FUZZ_SETTINGS = settings(FUZZ_SETTINGS, max_examples=60)

#: The fixture's node signs with NODE; the drawn registrations with TRUSTED (both trusted), so that they can
#: neither replace that node nor spend its timestamps.
NODE, TRUSTED = Signer(), Signer()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def mutated(fields: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Well-typed ``fields`` about half the time; else with one of them (or one more) any JSON value."""

    def mutate(drawn: tuple[dict[str, Any], bool, int, Any]) -> dict[str, Any]:
        body, keep, index, value = drawn
        if keep:
            return body
        names = sorted(body)
        return {**body, names[index] if index < len(names) else "extra": value}

    return st.tuples(fields, st.booleans(), st.integers(min_value=0, max_value=8), json_values).map(mutate)


class Setup(msgspec.Struct):
    gateway: RunningGateway
    key: str
    node_url: str
    node_key: str


@pytest.fixture(scope="module")
def setup(upstream: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    trusted = [NODE.public_key_base64, TRUSTED.public_key_base64]
    path: Path = write_config(tmp_path_factory.mktemp("nodes-fuzz"), trusted, 3600)
    with gateway_for(path) as gateway:
        key = create_key(gateway.config)
        assert httpx.post(f"{gateway.url}/v1/nodes", content=registration(NODE, upstream.url), timeout=30).is_success
        lock = httpx.post(
            f"{gateway.url}/v1/nodes/lock", json={"model": MODEL}, headers={"authorization": f"Bearer {key}"}
        )
        assert lock.status_code == 200, lock.text
        yield Setup(gateway, key, upstream.url, lock.json()["public_key"])


def check_answer(gateway: RunningGateway, response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    outcome = str(response.status_code)
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/json", response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], error
        outcome += f" {error['code']}"
    event(outcome)  # --hypothesis-show-statistics: which checks the drawn bodies reached
    assert httpx.get(f"{gateway.url}/v1/models", headers={"authorization": "Bearer x"}).status_code == 401


def signed_body(data: Any) -> bytes:
    """``data`` with a valid signature by the trusted key over its compact JSON."""
    encoded = msgspec.json.encode(data)
    return msgspec.json.encode({"data": msgspec.Raw(encoded), "signature": TRUSTED.sign_hash(blake2b256(encoded))})


def registrations(node_url: str) -> st.SearchStrategy[bytes]:
    now = st.builds(lambda: int(time.time() * 1000))
    atoma = {
        "node_small_id": st.integers(min_value=0, max_value=2**48) | st.integers(),
        "public_address": st.just(sui_address(TRUSTED.public_key)) | st.sampled_from(["0x00", ""]),
        "country": st.text(max_size=4),
    }
    joining = {
        "name": st.sampled_from(["n2", "n3", "n1", "", "\x00", "x" * 65]) | st.text(max_size=8),
        "url": st.sampled_from(
            [node_url, "http://127.0.0.1:9", "ftp://x", "http://", "http://[::1", "http://h:99999", "http://ü/"]
        ),
        "timestamp": st.one_of(now, now, now, st.integers(min_value=-(2**64), max_value=2**65)),
    }
    # Chunkwise's shape, Atoma's, and mixtures of the two.
    shapes = st.one_of(
        st.fixed_dictionaries({**atoma, **joining}),
        st.fixed_dictionaries(atoma),
        st.fixed_dictionaries(atoma, optional=joining),
    )
    data = shapes.flatmap(lambda fields: mutated(st.just(fields)))
    unsigned = st.fixed_dictionaries({"data": data, "signature": st.text(max_size=140)}).map(msgspec.json.encode)
    return st.one_of(data.map(signed_body), unsigned, json_values.map(msgspec.json.encode), st.binary(max_size=64))


@given(data=st.data())
@NODE_FUZZ_SETTINGS
def test_fuzzed_registrations(setup: Setup, data: st.DataObject) -> None:
    body = data.draw(registrations(setup.node_url))
    response = httpx.post(f"{setup.gateway.url}/v1/nodes", content=body, timeout=30)
    check_answer(setup.gateway, response)
    if response.status_code == 200:
        assert response.json()["message"] == "Success"


@given(data=st.data())
@NODE_FUZZ_SETTINGS
def test_fuzzed_lock_requests(setup: Setup, data: st.DataObject) -> None:
    lock = mutated(
        st.fixed_dictionaries(
            {"model": st.sampled_from([MODEL, "", "other"])},
            optional={"max_num_tokens": st.integers(min_value=-1, max_value=2**64), "timeout": st.integers()},
        )
    )
    body = data.draw(st.one_of(lock.map(msgspec.json.encode), json_values.map(msgspec.json.encode), st.binary()))
    headers = data.draw(st.sampled_from([{"authorization": f"Bearer {setup.key}"}, {}, {"authorization": "Bearer no"}]))
    response = httpx.post(f"{setup.gateway.url}/v1/nodes/lock", content=body, headers=headers, timeout=30)
    check_answer(setup.gateway, response)
    if response.status_code == 200:
        assert response.json()["public_key"] == setup.node_key


@pytest.mark.parametrize(
    "path", ["/v1/confidential/chat/completions", "/v1/confidential/completions", "/v1/confidential/embeddings"]
)
@given(data=st.data())
@NODE_FUZZ_SETTINGS
def test_fuzzed_confidential_envelopes(setup: Setup, path: str, data: st.DataObject) -> None:
    base64_text = st.binary(max_size=40).map(lambda raw: base64.b64encode(raw).decode())
    envelope = st.fixed_dictionaries(
        {
            "ciphertext": base64_text,
            "nonce": base64_text,
            "salt": base64_text,
            "client_dh_public_key": base64_text,
            "node_dh_public_key": st.sampled_from([setup.node_key, "AAAA"]),
            "plaintext_body_hash": base64_text,
            "stack_small_id": st.integers(min_value=0, max_value=2**64),
            "model_name": st.sampled_from([MODEL, "other"]),
        },
        optional={"stream": st.booleans(), "num_compute_units": st.integers()},
    ).flatmap(lambda fields: mutated(st.just(fields)))
    body = data.draw(st.one_of(envelope.map(msgspec.json.encode), json_values.map(msgspec.json.encode)))
    response = httpx.post(
        f"{setup.gateway.url}{path}", content=body, headers={"authorization": f"Bearer {setup.key}"}, timeout=30
    )
    check_answer(setup.gateway, response)
    assert response.status_code != 200  # nothing drawn here is a sealed request
