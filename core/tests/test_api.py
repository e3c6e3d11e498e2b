"""The REST API as the seeds' curl examples drive it, plus tenancy and errors."""

from __future__ import annotations

import json

import pytest

from .conftest import KEY_A, KEY_B, auth

pytestmark = pytest.mark.anyio

SEED_SECRET = "ZrVkDm7_F24.cwA.BEs.Sz0w9A3HT1jhIo67glktyW4wz73y6J_Hd810FP6eFTpQ"
BOT_CREDENTIALS = '{"token": "' + SEED_SECRET + '"}'


async def make_sender(client, **overrides) -> dict:  # type: ignore[no-untyped-def]
    body = {"channel": "loop", "address": "+15550001", "webhook_secret": "loop-webhook-secret", **overrides}
    response = await client.post("/v1/senders", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def make_connector(client, sender_id: str, **overrides) -> dict:  # type: ignore[no-untyped-def]
    body = {
        "type": "ECHO",
        "sender_id": sender_id,
        "credentials": BOT_CREDENTIALS,
        "external_id": "Test123",
        **overrides,
    }
    response = await client.post("/v1/connectors", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_seed_connector_lifecycle(client) -> None:  # type: ignore[no-untyped-def]
    sender = await make_sender(client)
    created = await make_connector(client, sender["id"])
    assert created["type"] == "ECHO"
    assert created["sender_id"] == sender["id"]
    assert created["external_id"] == "Test123"
    assert created["version_number"] == 1
    assert created["state"] == "active"
    assert {"id", "created_at", "updated_at"} <= created.keys()
    assert "credentials" not in created and "credentials_enc" not in created

    fetched = (await client.get(f"/v1/connectors/{created['id']}")).json()
    assert fetched == created

    listed = (await client.get("/v1/connectors")).json()
    assert [c["id"] for c in listed["items"]] == [created["id"]]

    # The seed's update: POST with version_number as a string.
    response = await client.post(
        f"/v1/connectors/{created['id']}",
        json={
            "credentials": '{"token": "update-credentials"}',
            "external_id": "changed-id-assigned-by-me",
            "version_number": "1",
        },
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["version_number"] == 2
    assert updated["external_id"] == "changed-id-assigned-by-me"
    assert updated["created_at"] == created["created_at"]

    stale = await client.post(f"/v1/connectors/{created['id']}", json={"external_id": "x", "version_number": 1})
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "version_conflict"
    assert stale.json()["error"]["details"] == {"current_version_number": 2}

    patched = await client.patch(
        f"/v1/connectors/{created['id']}", json={"config": {"rate_limit": 5}, "version_number": 2}
    )
    assert patched.status_code == 200
    assert patched.json()["config"]["rate_limit"] == 5
    assert patched.json()["version_number"] == 3

    assert (await client.delete(f"/v1/connectors/{created['id']}")).status_code == 204
    assert (await client.get(f"/v1/connectors/{created['id']}")).status_code == 404
    assert (await client.delete(f"/v1/connectors/{created['id']}")).status_code == 404


async def test_no_response_contains_a_secret(client) -> None:  # type: ignore[no-untyped-def]
    sender = await make_sender(client, credentials="sender-credential-value", webhook_secret="webhook-secret-value")
    connector = await make_connector(client, sender["id"])
    bodies = [json.dumps(sender), json.dumps(connector)]
    for path in ("/v1/senders", f"/v1/senders/{sender['id']}", "/v1/connectors", f"/v1/connectors/{connector['id']}"):
        bodies.append((await client.get(path)).text)
    bodies.append((await client.post(f"/v1/connectors/{connector['id']}", json={"version_number": 1})).text)
    for body in bodies:
        for secret in (SEED_SECRET, "sender-credential-value", "webhook-secret-value"):
            assert secret not in body


async def test_secrets_are_stored_encrypted(client, app) -> None:  # type: ignore[no-untyped-def]
    sender = await make_sender(client, credentials="sender-credential-value")
    connector = await make_connector(client, sender["id"])
    store = app.state.runtime.store
    stored_sender = await store.get_sender(sender["id"])
    stored_connector = await store.get_connector(connector["id"])
    assert "sender-credential-value" not in stored_sender.model_dump_json()
    assert SEED_SECRET not in stored_connector.model_dump_json()
    assert app.state.runtime.box.decrypt(stored_connector.credentials_enc) == BOT_CREDENTIALS


async def test_secrets_never_reach_the_logs(client, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level("DEBUG")
    sender = await make_sender(client, credentials="sender-credential-value")
    await make_connector(client, sender["id"])
    await client.post(
        "/v1/connectors", json={"type": "ECHO", "sender_id": sender["id"], "credentials": "{bad " + SEED_SECRET}
    )
    assert caplog.records  # something was logged
    for record in caplog.records:
        text = record.getMessage()
        assert SEED_SECRET not in text and "sender-credential-value" not in text


async def test_other_accounts_see_nothing(app, client) -> None:  # type: ignore[no-untyped-def]
    from botbridge.testing import api_client

    sender = await make_sender(client)
    connector = await make_connector(client, sender["id"])
    transport_client = client
    other = {"authorization": f"Bearer {KEY_B}"}
    for method, path, body in (
        ("GET", f"/v1/connectors/{connector['id']}", None),
        ("POST", f"/v1/connectors/{connector['id']}", {"version_number": 1}),
        ("PATCH", f"/v1/connectors/{connector['id']}", {"version_number": 1}),
        ("DELETE", f"/v1/connectors/{connector['id']}", None),
        ("GET", f"/v1/senders/{sender['id']}", None),
        ("PATCH", f"/v1/senders/{sender['id']}", {"address": "+1"}),
        ("DELETE", f"/v1/senders/{sender['id']}", None),
    ):
        response = await transport_client.request(method, path, json=body, headers=other)
        assert response.status_code == 404, (method, path)
        assert connector["id"] not in response.text or "not found" in response.text
    assert (await transport_client.get("/v1/connectors", headers=other)).json()["items"] == []
    assert (await transport_client.get("/v1/senders", headers=other)).json()["items"] == []
    # Binding another account's sender is refused without revealing it exists.
    response = await transport_client.post(
        "/v1/connectors",
        json={"type": "ECHO", "sender_id": sender["id"], "credentials": BOT_CREDENTIALS},
        headers=other,
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "sender_id"
    # And the owner still has it.
    assert (await client.get(f"/v1/connectors/{connector['id']}")).status_code == 200
    del api_client


@pytest.mark.parametrize("header", [None, "Bearer wrong-key-000", "Basic " + KEY_A, "Bearer "])
async def test_missing_or_wrong_key_is_401(client, header) -> None:  # type: ignore[no-untyped-def]
    headers = {"authorization": header} if header is not None else {}
    client.headers.pop("authorization", None)
    for path in ("/v1/connectors", "/v1/senders", "/v1/plugins"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


async def test_sender_bound_once(client) -> None:  # type: ignore[no-untyped-def]
    sender = await make_sender(client)
    await make_connector(client, sender["id"])
    response = await client.post(
        "/v1/connectors", json={"type": "ECHO", "sender_id": sender["id"], "credentials": BOT_CREDENTIALS}
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "sender_taken"


async def test_moving_a_connector_to_a_taken_sender_conflicts(client) -> None:  # type: ignore[no-untyped-def]
    one, two = await make_sender(client), await make_sender(client, address="+15550002")
    first = await make_connector(client, one["id"])
    await make_connector(client, two["id"])
    response = await client.post(f"/v1/connectors/{first['id']}", json={"sender_id": two["id"], "version_number": 1})
    assert response.status_code == 409
    three = await make_sender(client, address="+15550003")
    moved = await client.post(f"/v1/connectors/{first['id']}", json={"sender_id": three["id"], "version_number": 1})
    assert moved.status_code == 200 and moved.json()["sender_id"] == three["id"]


async def test_unknown_type_names_the_installed_ones(client) -> None:  # type: ignore[no-untyped-def]
    sender = await make_sender(client)
    response = await client.post(
        "/v1/connectors", json={"type": "AMAZON_LEX_V9", "sender_id": sender["id"], "credentials": "x"}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"][0]["field"] == "type"
    assert "ECHO" in error["message"]


async def test_credentials_are_validated_by_the_bot_plugin(client) -> None:  # type: ignore[no-untyped-def]
    sender = await make_sender(client)
    response = await client.post(
        "/v1/connectors", json={"type": "ECHO", "sender_id": sender["id"], "credentials": '{"tok": 1}'}
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "credentials.token"
    connector = await make_connector(client, sender["id"])
    response = await client.post(f"/v1/connectors/{connector['id']}", json={"credentials": "nope", "version_number": 1})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "credentials"
    assert (await client.get(f"/v1/connectors/{connector['id']}")).json()["version_number"] == 1


async def test_type_cannot_change(client) -> None:  # type: ignore[no-untyped-def]
    sender = await make_sender(client)
    connector = await make_connector(client, sender["id"])
    response = await client.post(f"/v1/connectors/{connector['id']}", json={"type": "OTHER", "version_number": 1})
    assert response.status_code == 422


async def test_connector_config_is_validated(client) -> None:  # type: ignore[no-untyped-def]
    sender = await make_sender(client)
    for bad in ({"rate_limit": 0}, {"conversation_timeout": -1}, {"rate_limit": "fast"}):
        response = await client.post(
            "/v1/connectors",
            json={"type": "ECHO", "sender_id": sender["id"], "credentials": BOT_CREDENTIALS, "config": bad},
        )
        assert response.status_code == 422, bad
        assert response.json()["error"]["details"][0]["field"].startswith("config.")
    connector = await make_connector(
        client, sender["id"], config={"conversation_timeout": 60, "fallback_text": "Sorry!", "language_code": "de"}
    )
    assert connector["config"] == {
        "conversation_timeout": 60,
        "rate_limit": 30,
        "fallback_text": "Sorry!",
        "language_code": "de",
    }


async def test_list_filters_and_pagination(client) -> None:  # type: ignore[no-untyped-def]
    ids = []
    for i in range(5):
        sender = await make_sender(client, address=f"+1555000{i}")
        ids.append((await make_connector(client, sender["id"], external_id=f"ext-{i % 2}"))["id"])
    page = (await client.get("/v1/connectors", params={"limit": 2})).json()
    seen = [c["id"] for c in page["items"]]
    while page["next_cursor"]:
        page = (await client.get("/v1/connectors", params={"limit": 2, "cursor": page["next_cursor"]})).json()
        seen += [c["id"] for c in page["items"]]
    assert seen == ids
    odd = (await client.get("/v1/connectors", params={"external_id": "ext-1"})).json()["items"]
    assert [c["id"] for c in odd] == [ids[1], ids[3]]
    assert (await client.get("/v1/connectors", params={"type": "NOPE"})).json()["items"] == []
    assert (await client.get("/v1/connectors", params={"limit": 0})).status_code == 422
    assert (await client.get("/v1/connectors", params={"limit": "x"})).status_code == 422


async def test_sender_lifecycle(client) -> None:  # type: ignore[no-untyped-def]
    sender = await make_sender(client, config={"region": "eu"})
    assert sender["webhook_url"] == f"/v1/webhooks/loop/{sender['id']}"
    assert sender["config"] == {"region": "eu"}
    updated = await client.patch(f"/v1/senders/{sender['id']}", json={"address": "+15559999"})
    assert updated.status_code == 200 and updated.json()["address"] == "+15559999"
    bad = await client.patch(f"/v1/senders/{sender['id']}", json={"config": {"region": "mars"}})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "config.region"
    connector = await make_connector(client, sender["id"])
    assert (await client.delete(f"/v1/senders/{sender['id']}")).status_code == 409
    await client.delete(f"/v1/connectors/{connector['id']}")
    assert (await client.delete(f"/v1/senders/{sender['id']}")).status_code == 204
    assert (await client.get(f"/v1/senders/{sender['id']}")).status_code == 404


async def test_sender_validation(client) -> None:  # type: ignore[no-untyped-def]
    cases = [
        ({"channel": "nope", "address": "+1"}, "channel"),
        ({"channel": "loop", "address": "+1"}, "webhook_secret"),
        ({"channel": "loop"}, "address"),
        ({"channel": "loop", "address": "+1", "webhook_secret": "s", "surprise": 1}, "surprise"),
    ]
    for body, field in cases:
        response = await client.post("/v1/senders", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["details"][0]["field"] == field


async def test_public_url_makes_webhook_urls_absolute(settings, clock) -> None:  # type: ignore[no-untyped-def]
    from botbridge.host import create_app
    from botbridge.testing import api_client

    from .conftest import make_plugins

    settings.public_url = "https://bots.example.com"
    app = create_app(settings, plugins=make_plugins(), clock=clock)
    async with api_client(app, KEY_A) as client:
        sender = await make_sender(client)
    assert sender["webhook_url"] == f"https://bots.example.com/v1/webhooks/loop/{sender['id']}"


async def test_error_shapes(client) -> None:  # type: ignore[no-untyped-def]
    malformed = await client.post("/v1/connectors", content=b"{nope", headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_json"
    wrong_type = await client.post(
        "/v1/connectors", content=b"type=x", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert wrong_type.status_code == 415
    huge = await client.post(
        "/v1/connectors",
        content=b'{"x": "' + b"a" * (1024 * 1024) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413
    not_object = await client.post("/v1/connectors", json=[1, 2])
    assert not_object.status_code == 422
    missing = await client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    method = await client.put("/v1/connectors")
    assert method.status_code == 405 and method.json()["error"]["code"] == "method_not_allowed"
    for response in (malformed, wrong_type, huge, not_object, missing, method):
        assert set(response.json()["error"]) == {"code", "message", "details"}


async def test_health_and_readiness(client, app) -> None:  # type: ignore[no-untyped-def]
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    # the store says how durable it is: the memory store keeps nothing
    assert ready.json()["store"] == {"durable": False, "detail": "memory: nothing is kept"}
    assert "\nbotbridge_store_durable 0.0\n" in (await client.get("/metrics")).text

    async def down() -> bool:
        return False

    app.state.runtime.store.ping = down
    assert (await client.get("/readyz")).status_code == 503


async def test_plugins_endpoint(client) -> None:  # type: ignore[no-untyped-def]
    plugins = {p["name"]: p for p in (await client.get("/v1/plugins")).json()["plugins"]}
    assert plugins["testplugin"]["channels"] == ["loop"]
    assert plugins["testplugin"]["connector_types"] == ["ECHO"]
    assert plugins["testplugin"]["kinds"] == ["channel", "bot"]
    assert plugins["memory"]["store_schemes"] == ["memory"]


async def test_second_key_of_same_account_sees_same_data(settings, clock) -> None:  # type: ignore[no-untyped-def]
    from botbridge.host import create_app
    from botbridge.testing import api_client

    from .conftest import make_plugins

    settings.api_keys = f"acct-a:{KEY_A},acct-a:second-key-for-a"  # type: ignore[assignment]
    app = create_app(settings, plugins=make_plugins(), clock=clock)
    async with api_client(app, KEY_A) as client:
        sender = await make_sender(client)
        response = await client.get(f"/v1/senders/{sender['id']}", headers=auth("second-key-for-a"))
        assert response.status_code == 200


async def test_readiness_and_metrics_show_store_durability(client, app) -> None:  # type: ignore[no-untyped-def]
    from botbridge.store import Durability

    store = app.state.runtime.store
    for durability, shown, gauge in (
        (Durability(True, "appendonly=yes"), {"durable": True, "detail": "appendonly=yes"}, "1.0"),
        (Durability(None, "CONFIG GET is refused"), {"durable": None, "detail": "CONFIG GET is refused"}, "-1.0"),
        (None, None, "-1.0"),
    ):
        store.durability = lambda d=durability: d
        body = (await client.get("/readyz")).json()
        assert body.get("store") == shown
        assert f"\nbotbridge_store_durable {gauge}\n" in (await client.get("/metrics")).text
