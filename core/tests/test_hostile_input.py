"""Input crafted to break the parser or a plugin gets a 4xx naming the field, never a 500."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from botbridge import json_input
from botbridge.json_input import JSONRefused

from .conftest import LoopChannel
from .test_api import make_connector, make_sender

pytestmark = pytest.mark.anyio

HUGE = "9" * 5000


def deep(levels: int, leaf: str = "1") -> str:
    return '{"k":' * levels + leaf + "}" * levels


async def post_raw(client: httpx.AsyncClient, method: str, url: str, raw: str) -> httpx.Response:
    return await client.request(method, url, content=raw.encode(), headers={"content-type": "application/json"})


def refused(response: httpx.Response, field: str) -> None:
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["details"][0]["field"] == field, response.text


async def test_a_5000_digit_number_in_any_body_names_its_field(client: httpx.AsyncClient) -> None:
    sender = await make_sender(client)
    connector = await make_connector(client, sender["id"])
    cases = [
        ("POST", "/v1/senders", '{"channel": "loop", "address": "+1", "config": {"n": NUM}}', "config.n"),
        ("PATCH", f"/v1/senders/{sender['id']}", '{"config": {"region": "us", "n": [1, NUM]}}', "config.n.1"),
        (
            "POST",
            "/v1/connectors",
            '{"type": "ECHO", "sender_id": "x", "config": {"rate_limit": NUM}}',
            "config.rate_limit",
        ),
        ("PATCH", f"/v1/connectors/{connector['id']}", '{"version_number": NUM}', "version_number"),
        ("POST", "/v1/messages", '{"sender_id": "x", "to": "+1", "text": NUM}', "text"),
        ("POST", "/v1/subscriptions", '{"url": "https://x.example", "secret": NUM}', "secret"),
        ("POST", "/v1/subscriptions", "[NUM]", "0"),
    ]
    for method, url, template, field in cases:
        for number in (HUGE, "-0." + HUGE, "1e999", "NaN"):
            refused(await post_raw(client, method, url, template.replace("NUM", number)), field)


async def test_credentials_nested_5000_deep_name_credentials(client: httpx.AsyncClient) -> None:
    sender = await make_sender(client)
    as_object = f'{{"type": "ECHO", "sender_id": "{sender["id"]}", "credentials": {deep(5000)}}}'
    refused(await post_raw(client, "POST", "/v1/connectors", as_object), "credentials")
    # the same as a string holding JSON, which the bot plugin would parse
    as_text = {"type": "ECHO", "sender_id": sender["id"], "credentials": deep(5000)}
    refused(await client.post("/v1/connectors", json=as_text), "credentials.k")
    refused(await client.post("/v1/connectors", json={**as_text, "credentials": deep(80)}), "credentials" + ".k" * 64)
    sender_body = {"channel": "loop", "address": "+1", "webhook_secret": "s", "credentials": deep(3000)}
    refused(await client.post("/v1/senders", json=sender_body), "credentials.k")
    refused(await post_raw(client, "POST", "/v1/senders", "[" * 5000 + "]" * 5000), "body")


async def test_webhook_bodies_with_absurd_numbers_or_nesting_are_400(client: httpx.AsyncClient) -> None:
    sender = await make_sender(client)
    for raw in ('{"id": "m", "from": "+1", "text": "x", "n": ' + HUGE + "}", deep(5000), deep(100)):
        response = await post_raw(client, "POST", f"/v1/webhooks/loop/{sender['id']}", raw)
        assert response.status_code in (400, 401), response.text


class Explosive(LoopChannel):
    """A channel whose validation has a bug: odd config types make it raise."""

    def validate_sender(self, address, credentials, webhook_secret, config):  # type: ignore[no-untyped-def]
        if "explode" in config:
            return {"ok": config["explode"]["not-a-dict"]}  # TypeError/KeyError on odd input
        return super().validate_sender(address, credentials, webhook_secret, config)


async def test_a_plugins_unexpected_exception_in_validation_is_422_and_logged(
    client: httpx.AsyncClient, app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rt = app.state.runtime
    rt._channels["loop"] = Explosive(rt.http, rt.clock)
    body = {"channel": "loop", "address": "+1", "webhook_secret": "s", "credentials": "top-secret-cred"}
    with caplog.at_level(logging.ERROR, logger="botbridge.api"):
        for explode in ({}, [], "x", 1):
            response = await client.post("/v1/senders", json={**body, "config": {"explode": explode}})
            assert response.status_code == 422, response.text
            assert response.json()["error"]["code"] == "validation_error"
            assert "loop plugin" in response.json()["error"]["message"]
    lines = [r.getMessage() for r in caplog.records if "raised" in r.getMessage()]
    assert len(lines) == 4 and all("plugin loop" in line and "test_hostile_input.py" in line for line in lines)
    assert not any("top-secret-cred" in r.getMessage() for r in caplog.records)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=20,
)


@given(json_values)
def test_ordinary_json_parses_as_the_standard_library_does(value: Any) -> None:
    raw = json.dumps(value)
    assert json_input.loads(raw) == json.loads(raw)


@given(st.integers(min_value=1, max_value=3 * json_input.MAX_DEPTH), st.sampled_from(["[", '{"a":']))
def test_nesting_is_refused_exactly_past_the_limit(levels: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    raw = opener * levels + "0" + closer * levels
    if levels <= json_input.MAX_DEPTH:
        json_input.loads(raw)
    else:
        with pytest.raises(JSONRefused):
            json_input.loads(raw)
