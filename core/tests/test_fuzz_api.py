"""Arbitrary requests never make the host answer 500; the documented API answers as documented.

The second test drives every operation of the host's own /openapi.json with
valid keys of two accounts: no 5xx, every answer matches the schema
documented for its status, and no account reads or changes another's records.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botbridge.host import create_app
from botbridge.openapi import document
from botbridge.settings import Settings

from .conftest import KEY_A, KEY_B, make_plugins

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


# "." and ".." are dot segments, removed by every client before a request
# is sent (RFC 3986 §5.2.4): `/v1/connectors/.` is `/v1/connectors/`, a
# different route, so they are no id a server can be given.
ident_text = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%"), min_size=1, max_size=30
).filter(lambda text: text not in (".", ".."))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]),
    path=st.sampled_from(PATHS),
    ident=ident_text,
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


# --- against the host's own OpenAPI document, two accounts ------------------------


def strategy_for(schema: Any, schemas: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of a (pydantic-made) JSON schema: mostly valid, with a share of anything at all."""
    if "$ref" in schema:
        return strategy_for(schemas[schema["$ref"].rsplit("/", 1)[-1]], schemas, depth)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return st.one_of(*(strategy_for(s, schemas, depth) for s in schema[key]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of(*(strategy_for({**schema, "type": k}, schemas, depth) for k in kind))
    if kind == "string":
        low = min(schema.get("minLength", 0), 40)
        return st.text(min_size=low, max_size=max(low, min(schema.get("maxLength", 40), 40)))
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=schema.get("maximum")) | st.integers()
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(strategy_for(schema.get("items", {}), schemas, depth + 1), max_size=3)
    if kind == "object" and depth < 3:
        properties = schema.get("properties", {})
        required = [name for name in schema.get("required", []) if name in properties]
        optional = {name: strategy_for(s, schemas, depth + 1) for name, s in properties.items() if name not in required}
        fixed = st.fixed_dictionaries(
            {name: strategy_for(properties[name], schemas, depth + 1) for name in required},
            optional=optional,
        )
        return fixed if properties else st.dictionaries(st.text(max_size=10), json_values, max_size=3)
    return json_values


class Accounts:
    """Two accounts with a sender, a connector and a subscription each; what each one owns."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.store = app.state.runtime.store
        self.ids: dict[str, dict[str, str]] = {}

    async def create(self, client: httpx.AsyncClient, key: str, account: str) -> None:
        headers = {"authorization": f"Bearer {key}"}
        sender = await client.post(
            "/v1/senders", json={"channel": "loop", "address": "+1555", "webhook_secret": "whsec"}, headers=headers
        )
        connector = await client.post(
            "/v1/connectors",
            json={"type": "ECHO", "sender_id": sender.json()["id"], "credentials": '{"token": "t"}'},
            headers=headers,
        )
        subscription = await client.post(
            "/v1/subscriptions",
            json={"url": "https://8.8.8.8/hook", "secret": "whsec-fuzz-1", "topic": "never-published"},
            headers=headers,
        )
        message = await client.post(
            "/v1/messages", json={"sender_id": sender.json()["id"], "to": "+1666", "text": "hi"}, headers=headers
        )
        assert subscription.status_code == 201, subscription.text
        self.ids[account] = {
            "sender_id": sender.json()["id"],
            "connector_id": connector.json()["id"],
            "subscription_id": subscription.json()["id"],
            "message_id": message.json()["id"],
        }

    def records_of(self, account: str) -> Any:
        """Everything the store holds for one account (the memory store's dicts)."""
        store = self.store
        senders = {k: v for k, v in store.senders.items() if v.account_id == account}
        return (
            senders,
            {k: v for k, v in store.connectors.items() if v.account_id == account},
            {k: v for k, v in store.subscriptions.items() if v.account_id == account},
            {k: v for k, v in store.outbound.items() if v[1].sender_id in senders},
        )

    def owner(self, record_id: str) -> str | None:
        store = self.store
        for table in (store.senders, store.connectors, store.subscriptions):
            if record_id in table:
                return str(table[record_id].account_id)
        if record_id in store.outbound:
            sender = store.senders.get(store.outbound[record_id][1].sender_id)
            return str(sender.account_id) if sender else None
        return None


@pytest.fixture
async def accounts(app: Any, client: httpx.AsyncClient) -> Accounts:
    found = Accounts(app)
    await found.create(client, KEY_A, "acct-a")
    await found.create(client, KEY_B, "acct-b")
    return found


# The document the conftest's host serves (a test checks they are the same), built
# here so requests are drawn from it before each example runs.
DOC = document(create_app(Settings(store="memory://", secret_key="fuzz-doc-secret-0001"), plugins=make_plugins()))
SCHEMAS = DOC["components"]["schemas"]
OPERATIONS = [
    (path, method)
    for path, methods in sorted(DOC["paths"].items())
    for method in sorted(methods)
    if path not in ("/metrics", "/v1/events/stream")  # Prometheus text; a stream that never ends (test_stream.py)
]
KEYS = {"acct-a": KEY_A, "acct-b": KEY_B}


@st.composite
def api_calls(draw: Any) -> dict[str, Any]:
    path, method = draw(st.sampled_from(OPERATIONS))
    spec = DOC["paths"][path][method]
    targets = {}
    for name in re.findall(r"\{(\w+)\}", path):
        if name == "channel":
            targets[name] = ("fixed", draw(st.sampled_from(["loop", "nope"])))
        elif name == "contact":
            # a person, not a record of either account: both accounts have written to +1666,
            # and one account erasing them must leave the other's records as they are
            targets[name] = ("fixed", draw(st.sampled_from(["+1666", "+1999", "x"])))
        else:
            targets[name] = (draw(st.sampled_from(["own", "other", "random"])), draw(ident_text))
    params = {
        param["name"]: str(draw(strategy_for(param["schema"], SCHEMAS) | st.text(max_size=5)))
        for param in spec.get("parameters", [])
        if param["in"] == "query" and draw(st.booleans())
    }
    body = None
    if "requestBody" in spec:
        schema = spec["requestBody"]["content"].get("application/json", {}).get("schema", {})
        body = draw(strategy_for(schema, SCHEMAS) | json_values)
    return {
        "path": path,
        "method": method,
        "caller": draw(st.sampled_from(sorted(KEYS))),
        "targets": targets,
        "params": params,
        "body": body,
        "body_points_at_other": draw(st.booleans()),
    }


async def test_the_served_document_is_the_one_fuzzed(client: httpx.AsyncClient) -> None:
    assert (await client.get("/openapi.json")).json() == DOC


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=api_calls())
async def test_the_documented_api_answers_as_documented_and_keeps_accounts_apart(
    client: httpx.AsyncClient, accounts: Accounts, call: dict[str, Any]
) -> None:
    path, method, caller = call["path"], call["method"], call["caller"]
    spec = DOC["paths"][path][method]
    other = next(a for a in KEYS if a != caller)
    url, targets_other = path, False
    for name, (whose, text) in call["targets"].items():
        if whose == "fixed":
            value = text
        elif whose == "random":
            value = text
        else:
            value = accounts.ids[caller if whose == "own" else other].get(name, text)
            targets_other = targets_other or whose == "other"
        url = url.replace("{" + name + "}", quote(value, safe=""))
    value = call["body"]
    if isinstance(value, dict) and "sender_id" in value and call["body_points_at_other"]:
        value["sender_id"] = accounts.ids[other]["sender_id"]
        targets_other = True
    body = None if value is None else json.dumps(value).encode()
    params = call["params"]
    before = accounts.records_of(other)
    response = await client.request(
        method.upper(),
        url,
        params=params,
        content=body,
        headers={"authorization": f"Bearer {KEYS[caller]}", "content-type": "application/json"},
    )
    status = response.status_code
    assert status < 500, (method, url, body, response.text)
    documented = spec["responses"]
    assert str(status) in documented, (method, path, status, response.text)
    content = documented[str(status)].get("content", {})
    if "application/json" in content:
        schema = {**content["application/json"]["schema"], "components": DOC["components"]}
        jsonschema.validate(response.json(), schema)
    # no account reads or changes another's records
    assert accounts.records_of(other) == before, (method, url, body)
    if targets_other and "/webhooks/" not in path:
        assert status >= 400, (method, url, body, response.text)
    if status < 300 and status != 204 and path.startswith("/v1/") and "/webhooks/" not in path:
        payload = response.json()
        for item in payload.get("items", [payload]) if isinstance(payload, dict) else []:
            if isinstance(item, dict) and "id" in item:
                assert accounts.owner(item["id"]) in (caller, None), (method, url, item)
