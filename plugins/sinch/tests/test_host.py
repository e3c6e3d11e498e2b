"""The plugin inside the real host: senders, webhooks, provisioning."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import botbridge_sinch.plugin
from botbridge.channel import WebhookResult
from botbridge.clock import FakeClock
from botbridge.host import create_app
from botbridge.models import InboundMessage
from botbridge.plugins import Plugins
from botbridge.settings import Settings
from botbridge.stores import memory
from botbridge.testing import api_client
from botbridge_sinch.testing import FakeSinch

pytestmark = pytest.mark.anyio

API_KEY = "key-123456"
PUBLIC_URL = "https://bb.example.com"
FAKE_URL = "http://fake-sinch.test"


def make_plugins() -> Plugins:
    plugins = Plugins()
    plugins.add(memory, "memory", builtin=True)
    plugins.add(botbridge_sinch.plugin, "sinch")
    plugins.collect()
    return plugins


@pytest.fixture
async def client(fake: FakeSinch, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        store="memory://",
        api_keys=f"acct:{API_KEY}",  # type: ignore[arg-type]
        secret_key="x" * 32,  # type: ignore[arg-type]
        public_url=PUBLIC_URL,
    )
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app))
    app = create_app(settings, plugins=make_plugins(), http=http, clock=clock)
    async with api_client(app, API_KEY) as c:
        yield c


def sender_body(fake: FakeSinch, **config: Any) -> dict[str, Any]:
    return {
        "channel": "sinch",
        "address": "+46709876543",
        "credentials": {
            "project_id": fake.project_id,
            "app_id": fake.app_id,
            "key_id": fake.key_id,
            "key_secret": fake.key_secret,
        },
        "webhook_secret": fake.webhook_secret,
        "config": {"base_url": FAKE_URL, "auth_url": FAKE_URL, **config},
    }


async def create_sender(client: httpx.AsyncClient, fake: FakeSinch, **config: Any) -> dict[str, Any]:
    response = await client.post("/v1/senders", json=sender_body(fake, **config))
    assert response.status_code == 201, response.text
    return dict(response.json())


def webhook_path(sender: dict[str, Any]) -> str:
    return f"/v1/webhooks/sinch/{sender['id']}"


def test_entry_point_is_discovered() -> None:
    plugins = Plugins.discover(Settings(store="memory://"))
    assert plugins.channels["sinch"] is botbridge_sinch.SinchChannel
    info = plugins.infos["sinch"]
    assert info.distribution == "botbridge-sinch" and info.errors == []
    assert info.channels == ["sinch"]


async def test_plugin_is_listed(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/v1/plugins")).json()["plugins"]
    assert any("sinch" in p.get("channels", []) for p in listed)


async def test_sender_creation_validates_fields(client: httpx.AsyncClient, fake: FakeSinch) -> None:
    created = await create_sender(client, fake, channel="whatsapp")
    assert created["config"]["channel"] == "WHATSAPP"
    assert created["webhook_url"] == PUBLIC_URL + webhook_path(created)
    assert "credentials" not in created and "webhook_secret" not in created
    body = sender_body(fake)
    del body["credentials"]["key_secret"]
    cases = [
        (body, "credentials.key_secret"),
        ({**sender_body(fake), "webhook_secret": ""}, "webhook_secret"),
        (sender_body(fake, region="mars"), "config.region"),
    ]
    for payload, field in cases:
        response = await client.post("/v1/senders", json=payload)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["details"][0]["field"] == field
        assert fake.key_secret not in response.text


async def test_signed_webhooks_through_the_host(client: httpx.AsyncClient, fake: FakeSinch, clock: FakeClock) -> None:
    sender = await create_sender(client, fake)
    path = webhook_path(sender)
    body = fake.inbound_body("Hello", "+15550001111", "01HWXYZMSG0000000000000001")

    first = await fake.deliver(path, body, client=client)
    assert [r.status_code for r in first] == [200]
    assert first[0].json() == {"status": "accepted", "accepted": 1, "duplicates": 0}
    # Sinch redelivers the same body with a fresh nonce: a duplicate, still 2xx.
    again = await fake.deliver(path, body, client=client)
    assert again[0].status_code == 200
    assert again[0].json() == {"status": "accepted", "accepted": 0, "duplicates": 1}

    async def post(raw: bytes, headers: dict[str, str]) -> httpx.Response:
        return await client.post(path, content=raw, headers=headers)

    def refused(response: httpx.Response) -> None:
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "invalid_signature"

    headers = fake.sign(body)
    assert (await post(body, headers)).status_code == 200
    refused(await post(body, headers))  # the same nonce again: a replay
    refused(await post(body.replace(b"Hello", b"Hellp"), fake.sign(body)))
    refused(await post(body, fake.sign(body, "not-the-secret")))
    refused(await post(body, fake.sign(body, timestamp=int(clock.now()) - 3600)))
    refused(await post(body, {"content-type": "application/json"}))

    malformed = await post(b"{not json", fake.sign(b"{not json"))
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "malformed_webhook"
    no_app = json.dumps({"message": {}}).encode()
    assert (await post(no_app, fake.sign(no_app))).status_code == 400

    unknown = await client.post("/v1/webhooks/sinch/no-such-sender", content=body, headers=fake.sign(body))
    assert unknown.status_code == 404

    other_trigger = json.dumps({"app_id": fake.app_id, "project_id": "", "event": {"contact_event": {}}}).encode()
    assert (await post(other_trigger, fake.sign(other_trigger))).json()["accepted"] == 0


async def test_delivery_reports_through_the_host(client: httpx.AsyncClient, fake: FakeSinch) -> None:
    sender = await create_sender(client, fake)
    fake.duplicate_deliveries = True
    responses = await fake.emit_lifecycle(webhook_path(sender), "01HWXYZOUT0000000000000000", client=client)
    assert [r.json()["accepted"] for r in responses] == [0, 0, 0]  # the last of each pair: duplicates
    assert [r.json()["duplicates"] for r in responses] == [1, 1, 1]
    assert len(fake.deliveries) == 6 and all(d.status_code == 200 for d in fake.deliveries)


async def test_provisioning_registers_and_removes_the_webhook(client: httpx.AsyncClient, fake: FakeSinch) -> None:
    body = sender_body(fake, provision=True)
    body["webhook_secret"] = ""
    response = await client.post("/v1/senders", json=body)
    assert response.status_code == 201, response.text
    sender = response.json()
    [webhook] = fake.webhooks.values()
    assert sender["config"]["webhook_id"] == webhook["id"]
    assert webhook["target"] == sender["webhook_url"] == PUBLIC_URL + webhook_path(sender)
    assert webhook["triggers"] == ["MESSAGE_INBOUND", "MESSAGE_DELIVERY"]
    # Sinch now calls the host, signing with the secret provisioning generated.
    [delivered] = await fake.emit_to_webhooks(fake.inbound_body("hi", "+15550002222"), "MESSAGE_INBOUND", client=client)
    assert delivered.status_code == 200 and delivered.json()["accepted"] == 1
    assert (await client.delete(f"/v1/senders/{sender['id']}")).status_code == 204
    assert fake.webhooks == {}


async def test_provisioning_with_refused_key_creates_nothing(client: httpx.AsyncClient, fake: FakeSinch) -> None:
    body = sender_body(fake, provision=True)
    body["credentials"]["key_secret"] = "wrong-key-secret"
    response = await client.post("/v1/senders", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "credentials"
    assert "wrong-key-secret" not in response.text
    assert (await client.get("/v1/senders")).json()["items"] == []
    assert fake.webhooks == {}


async def test_provisioning_limit_is_a_provider_failure(client: httpx.AsyncClient, fake: FakeSinch) -> None:
    # The app's 5 webhooks are taken by other targets: Sinch refuses a sixth.
    for index in range(5):
        fake.webhooks[f"w{index}"] = {
            "id": f"w{index}",
            "app_id": fake.app_id,
            "target": f"https://elsewhere{index}.example/hook",
            "target_type": "HTTP",
            "triggers": ["MESSAGE_INBOUND"],
            "secret": "s",
        }
    response = await client.post("/v1/senders", json=sender_body(fake, provision=True))
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "provision_failed"
    assert len(fake.webhooks) == 5


@pytest.fixture
async def host(
    fake: FakeSinch, clock: FakeClock
) -> AsyncIterator[tuple[Any, httpx.AsyncClient, list[tuple[str, str]]]]:
    settings = Settings(
        store="memory://",
        api_keys=f"acct:{API_KEY}",  # type: ignore[arg-type]
        secret_key="x" * 32,  # type: ignore[arg-type]
        public_url=PUBLIC_URL,
    )
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app))
    app = create_app(settings, plugins=make_plugins(), http=http, clock=clock)
    rt = app.state.runtime
    seen: list[tuple[str, str]] = []
    notify = rt.notify

    def record(hook: str, **kwargs: Any) -> None:
        # What was handed to which sender; other hooks (events) name no sender.
        if hook in ("on_inbound_message", "on_delivery_report"):
            item = kwargs["message"] if hook == "on_inbound_message" else kwargs["report"]
            seen.append((kwargs["sender"].id, item.sender_id))
        notify(hook, **kwargs)

    rt.notify = record
    async with api_client(app, API_KEY) as c:
        yield rt, c, seen


async def test_senders_of_one_app_share_one_webhook(host: Any, fake: FakeSinch) -> None:
    _, client, seen = host
    senders = []
    for index in range(6):  # Sinch allows 5 webhooks per app: one per sender would stop the sixth
        body = sender_body(fake, provision=True)
        body["webhook_secret"] = ""
        response = await client.post("/v1/senders", json={**body, "address": f"+4670000000{index}"})
        assert response.status_code == 201, response.text
        senders.append(response.json())
    owner, *others = senders
    [webhook] = fake.webhooks.values()
    assert webhook["target"] == owner["webhook_url"]
    assert all(s["config"] == {**s["config"], "webhook_id": webhook["id"], "webhook_via": owner["id"]} for s in others)

    # An inbound to another sender's number arrives at the owner's webhook and is that sender's.
    to_second = fake.inbound_body("hi second", "+46701111111", to="+46700000001")
    [delivered] = await fake.emit_to_webhooks(to_second, "MESSAGE_INBOUND", client=client)
    assert delivered.status_code == 200 and delivered.json()["accepted"] == 1
    assert seen[-1] == (others[0]["id"], others[0]["id"])
    to_owner = fake.inbound_body("hi owner", "+46701111111", to="+46700000000")
    await fake.emit_to_webhooks(to_owner, "MESSAGE_INBOUND", client=client)
    assert seen[-1] == (owner["id"], owner["id"])

    # A report names its sender through the message_metadata our sends carry.
    report = fake.report_body("01HWXYZOUT0000000000000009", "DELIVERED", message_metadata=others[2]["id"])
    await fake.emit_to_webhooks(report, "MESSAGE_DELIVERY", client=client)
    assert seen[-1] == (others[2]["id"], others[2]["id"])

    # The owner cannot go while others receive through its webhook; they can.
    assert (await client.delete(f"/v1/senders/{owner['id']}")).status_code == 409
    for other in others:
        assert (await client.delete(f"/v1/senders/{other['id']}")).status_code == 204
    assert len(fake.webhooks) == 1
    assert (await client.delete(f"/v1/senders/{owner['id']}")).status_code == 204
    assert fake.webhooks == {}


async def test_another_apps_callbacks_are_acknowledged_and_dropped(host: Any, fake: FakeSinch) -> None:
    # The webhook's target and secret are also registered at another app (an
    # operator's copy-paste): its callbacks arrive correctly signed. They are
    # answered 2xx, since Sinch retries any other answer and a retry can never
    # be accepted, and handed to none of the senders sharing the webhook.
    _, client, seen = host
    for index in range(2):
        body = sender_body(fake, provision=True)
        body["webhook_secret"] = ""
        response = await client.post("/v1/senders", json={**body, "address": f"+4670000000{index}"})
        assert response.status_code == 201, response.text
    other_app = "01OTHERAPP0000000000000000"
    fresh_id = "01HWXYZFOREIGN000000000001"  # never seen: only the app id can keep it out
    inbound = json.loads(fake.inbound_body("not for us", "+46701111111", fresh_id, to="+46700000001"))
    report = json.loads(fake.report_body("01HWXYZFOREIGN000000000002", "DELIVERED"))
    for data, trigger in ((inbound, "MESSAGE_INBOUND"), (report, "MESSAGE_DELIVERY")):
        data["app_id"] = other_app
        attempts = len(fake.deliveries)
        [answer] = await fake.emit_to_webhooks(json.dumps(data).encode(), trigger, client=client)
        assert answer.status_code == 200
        assert answer.json() == {"status": "accepted", "accepted": 0, "duplicates": 0}
        assert len(fake.deliveries) == attempts + 1  # acknowledged at once: Sinch does not retry it
    assert seen == []
    # The same message from our own app is taken: only the app id kept it out.
    inbound["app_id"] = fake.app_id
    [answer] = await fake.emit_to_webhooks(json.dumps(inbound).encode(), "MESSAGE_INBOUND", client=client)
    assert answer.json()["accepted"] == 1 and len(seen) == 1


async def test_core_routes_only_to_senders_that_share_the_webhook(host: Any, fake: FakeSinch) -> None:
    rt, client, seen = host
    owner = await create_sender(client, fake)
    unrelated = await create_sender(client, fake)  # its own webhook, same account
    # A report naming a sender that does not receive through this webhook stays the owner's.
    report = fake.report_body("01HWXYZOUT0000000000000010", "DELIVERED", message_metadata=unrelated["id"])
    response = await client.post(webhook_path(owner), content=report, headers=fake.sign(report))
    assert response.status_code == 200
    assert seen[-1] == (owner["id"], owner["id"])

    # Whatever a plugin claims: a record goes to another sender only when it shares the webhook.
    sharing = await create_sender(client, fake, webhook_via=owner["id"])
    stored = await rt.store.get_sender(owner["id"])
    for named, expected in ((unrelated["id"], owner["id"]), (sharing["id"], sharing["id"]), ("nobody", owner["id"])):
        message = InboundMessage(
            channel="sinch", sender_id=named, provider_message_id=f"m-{named}", contact="+4670", to_address="+4670"
        )
        await rt.engine.accept(stored, WebhookResult(messages=[message]))
        assert seen[-1] == (expected, expected)


async def test_nonces_are_per_sender(client: httpx.AsyncClient, fake: FakeSinch) -> None:
    # Another sender's webhook (another tenant's, even) that happened to use a
    # nonce must not make this sender's genuine webhook look like a replay.
    theirs = await create_sender(client, fake)
    mine = await create_sender(client, fake)
    body = fake.inbound_body("Hello", "+15550001111", "01HWXYZMSG0000000000000002")
    headers = fake.sign(body, nonce="SHARED-NONCE")
    assert (await client.post(webhook_path(theirs), content=body, headers=headers)).status_code == 200
    response = await client.post(webhook_path(mine), content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    # within one sender the nonce is still spent
    assert (await client.post(webhook_path(mine), content=body, headers=headers)).status_code == 401
