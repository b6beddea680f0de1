"""``item_reference`` input items: an earlier answer's items, named by id, read back from the response store."""

from __future__ import annotations

from typing import Any

import httpx

from .conftest import MODEL


def respond(http: httpx.Client, input_items: Any, **fields: Any) -> httpx.Response:
    body = {"model": MODEL, "input": input_items, "max_output_tokens": 8, "temperature": 0, **fields}
    return http.post("/v1/responses", json=body)


def test_a_reference_stands_for_the_stored_item(http: httpx.Client) -> None:
    first = respond(http, "Say hello.").json()
    [message] = first["output"]
    referenced = respond(
        http, [{"role": "user", "content": "Say hello."}, {"type": "item_reference", "id": message["id"]}]
    )
    assert referenced.status_code == 200, referenced.text
    # The same conversation, the item written out, gives the same prompt.
    written = respond(http, [{"role": "user", "content": "Say hello."}, message])
    assert referenced.json()["usage"]["input_tokens"] == written.json()["usage"]["input_tokens"]


def test_an_unknown_or_unstored_reference_is_a_404(http: httpx.Client) -> None:
    unstored = respond(http, "Say hello.", store=False).json()
    for item_id in (unstored["output"][0]["id"], "msg_nothing", "item_1"):
        refused = respond(http, [{"type": "item_reference", "id": item_id}])
        assert refused.status_code == 404, refused.text
        error = refused.json()["error"]
        assert error["param"] == "input[0].id"
        assert item_id in error["message"]


def test_a_reference_without_an_id_is_a_400(http: httpx.Client) -> None:
    refused = respond(http, [{"type": "item_reference"}])
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "input[0].id"
