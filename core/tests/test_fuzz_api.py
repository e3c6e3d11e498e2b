"""Arbitrary requests never make the host answer 500."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import KEY_A

pytestmark = pytest.mark.anyio

PATHS = [
    "/v1/connectors",
    "/v1/connectors/{id}",
    "/v1/senders",
    "/v1/senders/{id}",
    "/v1/plugins",
    "/v1/webhooks/loop/{sender}",
    "/v1/webhooks/{id}/{id}",
    "/healthz",
    "/openapi.json",
    "/{id}",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner, max_size=5),
    max_leaves=25,
)
field_names = st.sampled_from(
    [
        "type",
        "sender_id",
        "credentials",
        "external_id",
        "config",
        "version_number",
        "channel",
        "address",
        "webhook_secret",
        "rate_limit",
        "conversation_timeout",
    ]
)
plausible = st.dictionaries(field_names, json_values, max_size=6)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    plausible.map(lambda v: json.dumps(v).encode()),
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]),
    path=st.sampled_from(PATHS),
    ident=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%"), min_size=1, max_size=30
    ),
    body=bodies,
    content_type=st.sampled_from(["application/json", "text/plain", "application/json; charset=utf-8", ""]),
    authorized=st.booleans(),
    extra=st.dictionaries(st.sampled_from(["x-signature", "content-length-x", "accept"]), header_values, max_size=2),
)
async def test_no_input_makes_a_500(
    client, sender_for_fuzz, method, path, ident, body, content_type, authorized, extra
):  # type: ignore[no-untyped-def]
    url = path.format(id=ident, sender=sender_for_fuzz)
    headers = dict(extra)
    if content_type:
        headers["content-type"] = content_type
    headers["authorization"] = f"Bearer {KEY_A}" if authorized else "Bearer nope-nope"
    response = await client.request(
        method, url, content=body if method in ("POST", "PATCH", "PUT") else None, headers=headers
    )
    assert response.status_code < 500, (method, url, body, response.text)
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "details"}


@pytest.fixture
async def sender_for_fuzz(client) -> str:  # type: ignore[no-untyped-def]
    response = await client.post(
        "/v1/senders", json={"channel": "loop", "address": "+1555", "webhook_secret": "whsec-fuzz"}
    )
    return response.json()["id"]  # type: ignore[no-any-return]
