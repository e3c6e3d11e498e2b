"""The plugin through the real host: senders, webhooks, provisioning."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import botbridge_bird.plugin
from botbridge.clock import FakeClock
from botbridge.host import create_app
from botbridge.plugins import Plugins
from botbridge.settings import Settings
from botbridge.stores import memory
from botbridge.testing import api_client
from botbridge_bird.testing import BirdFake, compact

from .conftest import ACCESS_KEY, SIGNING_KEY

pytestmark = pytest.mark.anyio

API_KEY = "key-123456"
# Bird only calls https:// URLs on a hostname without a port.
PUBLIC_URL = "https://botbridge.example.com"
FAKE_URL = "http://bird.fake"


def make_plugins() -> Plugins:
    plugins = Plugins()
    plugins.add(memory, "memory", builtin=True)
    plugins.add(botbridge_bird.plugin, "bird")
    plugins.collect()
    return plugins


@pytest.fixture
async def client(fake: BirdFake, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        store="memory://",
        api_keys=f"acct:{API_KEY}",  # type: ignore[arg-type]
        secret_key="x" * 32,  # type: ignore[arg-type]
        public_url=PUBLIC_URL,
    )
    bird_http = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app))
    app = create_app(settings, plugins=make_plugins(), http=bird_http, clock=clock)
    async with api_client(app, API_KEY) as c:
        fake.http = c
        yield c


def sender_body(fake: BirdFake, **config: Any) -> dict[str, Any]:
    return {
        "channel": "bird",
        "address": "+3197010250000",
        "credentials": ACCESS_KEY,
        "webhook_secret": SIGNING_KEY,
        "config": {
            "workspace_id": fake.workspace_id,
            "organization_id": fake.organization_id,
            "base_url": FAKE_URL,
            **config,
        },
    }


async def create_sender(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/senders", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_entry_point_is_discovered() -> None:
    plugins = Plugins.discover(Settings(load_plugins="bird"))
    info = plugins.infos["bird"]
    assert info.errors == []
    assert info.distribution == "botbridge-bird" and info.channels == ["bird"]
    assert plugins.channels["bird"] is botbridge_bird.plugin.BirdChannel


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"credentials": ""}, "credentials"),
        ({"webhook_secret": ""}, "webhook_secret"),
        ({"config": {"base_url": FAKE_URL}}, "config.workspace_id"),
        ({"config": {"workspace_id": "00000000-0000-4000-8000-000000000000"}}, "config.channel_id"),
    ],
)
async def test_missing_settings_are_422(
    client: httpx.AsyncClient, fake: BirdFake, channel_id: str, change: dict[str, Any], field: str
) -> None:
    body = {**sender_body(fake, channel_id=channel_id), **change}
    response = await client.post("/v1/senders", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == field
    assert ACCESS_KEY not in response.text


async def test_webhooks_through_the_host(client: httpx.AsyncClient, fake: BirdFake, channel_id: str) -> None:
    sender = await create_sender(client, sender_body(fake, channel_id=channel_id))
    url = sender["webhook_url"]
    assert url == f"{PUBLIC_URL}/v1/webhooks/bird/{sender['id']}"
    assert "credentials" not in sender and "webhook_secret" not in sender

    first = await fake.emit_inbound(
        url, text="Hello", contact="+15551230001", message_id="mo-1", signing_key=SIGNING_KEY
    )
    assert first.status_codes == [200]
    assert first.responses[0].json() == {"status": "accepted", "accepted": 1, "duplicates": 0}
    # Bird's retry: the same body, timestamp and signature, later
    fake.duplicate_deliveries = True
    again = await fake.emit_inbound(
        url, text="Hello", contact="+15551230001", message_id="mo-1", signing_key=SIGNING_KEY
    )
    assert [r.json()["duplicates"] for r in again.responses] == [1, 1]
    fake.duplicate_deliveries = False

    body = compact(fake.inbound_event("Hi", "+15551230001", message_id="mo-2", channel_id=channel_id))
    headers = fake.signed_headers(body, url, SIGNING_KEY)
    path = f"/v1/webhooks/bird/{sender['id']}"
    assert (await client.post(path, content=body, headers=headers)).json()["accepted"] == 1

    for content, sign_headers in (
        (body.replace(b"Hi", b"Ho"), headers),
        (body, fake.signed_headers(body, url, "not-the-key")),
        (body, fake.signed_headers(body, url, SIGNING_KEY, fake.now() - 25 * 3600)),
        (body, {k: v for k, v in headers.items() if k != "messagebird-signature"}),
    ):
        refused = await client.post(path, content=content, headers=sign_headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_signature"
        assert headers["messagebird-signature"] not in refused.text

    garbage = b'{"service": "channels"'
    malformed = await client.post(path, content=garbage, headers=fake.signed_headers(garbage, url, SIGNING_KEY))
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "malformed_webhook"
    unknown = await client.post("/v1/webhooks/bird/nope", content=body, headers=headers)
    assert unknown.status_code == 404

    report = compact(fake.status_event("mt-1", "delivered"))
    answered = await client.post(path, content=report, headers=fake.signed_headers(report, url, SIGNING_KEY))
    assert answered.json()["accepted"] == 1


async def test_signed_url_override_through_the_host(client: httpx.AsyncClient, fake: BirdFake, channel_id: str) -> None:
    registered = "https://public.example.com/bird-hook"
    sender = await create_sender(client, sender_body(fake, channel_id=channel_id, signed_url=registered))
    body = compact(fake.inbound_event("Hi", "+15551230001", channel_id=channel_id))
    path = f"/v1/webhooks/bird/{sender['id']}"
    ok = await client.post(path, content=body, headers=fake.signed_headers(body, registered, SIGNING_KEY))
    assert ok.status_code == 200
    wrong = await client.post(path, content=body, headers=fake.signed_headers(body, sender["webhook_url"], SIGNING_KEY))
    assert wrong.status_code == 401


async def test_provisioning_end_to_end(client: httpx.AsyncClient, fake: BirdFake) -> None:
    fake.channels.clear()
    number_id = fake.add_phone_number("+3197010250088")
    body = sender_body(fake, provision=True, phone_number_id=number_id, channel_message_type="transactional")
    body["webhook_secret"] = ""
    sender = await create_sender(client, body)
    assert sender["state"] == "pending"
    connector_id = sender["config"]["connector_id"]
    assert list(fake.connectors) == [connector_id]
    assert {s["url"] for s in fake.subscriptions.values()} == {sender["webhook_url"]}
    assert sorted(sender["config"]["webhook_subscription_ids"]) == sorted(fake.subscriptions)

    emission = await fake.complete_install(connector_id)
    assert emission is not None and emission.status_codes == [200]
    current = (await client.get(f"/v1/senders/{sender['id']}")).json()
    assert current["state"] == "active"

    new_channel = fake.connectors[connector_id]["channel"]["channelId"]
    # Activation narrowed every subscription to the new channel: none is left unfiltered.
    assert current["config"]["channel_id"] == new_channel
    assert all(s["eventFilters"] == [{"key": "channelId", "value": new_channel}] for s in fake.subscriptions.values())
    assert sorted(s["event"] for s in fake.subscriptions.values()) == ["channel.updated", "sms.inbound", "sms.outbound"]
    assert sorted(current["config"]["webhook_subscription_ids"]) == sorted(fake.subscriptions)
    # A redelivered channel.updated changes nothing more.
    again = await fake.deliver(
        {
            "service": "channels",
            "event": "channel.updated",
            "payload": {"connectorId": connector_id, "channelId": new_channel, "status": "active"},
        }
    )
    assert again.status_codes == [200] and len(fake.subscriptions) == 3
    inbound = await fake.emit_inbound(text="hello", contact="+15551230002", channel_id=new_channel)
    assert [r.json()["accepted"] for r in inbound.responses] == [1]

    assert (await client.delete(f"/v1/senders/{sender['id']}")).status_code == 204
    assert fake.subscriptions == {} and fake.connectors == {} and fake.channels == {}


async def test_failed_install_and_refused_credentials(client: httpx.AsyncClient, fake: BirdFake) -> None:
    number_id = fake.add_phone_number()
    body = sender_body(fake, provision=True, phone_number_id=number_id, channel_message_type="transactional")
    sender = await create_sender(client, body)
    await fake.complete_install(sender["config"]["connector_id"], ok=False, reason="number is not available")
    current = (await client.get(f"/v1/senders/{sender['id']}")).json()
    assert (current["state"], current["state_reason"]) == ("failed", "number is not available")

    refused = await client.post("/v1/senders", json={**body, "credentials": "wrong-access-key"})
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["field"] == "credentials"
    assert "wrong-access-key" not in refused.text
    assert len(fake.connectors) == 1


def test_public_exports() -> None:
    import botbridge_bird

    assert sorted(botbridge_bird.__all__) == [
        "BirdChannel",
        "CHANNEL_TYPES",
        "DEFAULT_BASE_URL",
        "DEFAULT_REPLAY_WINDOW",
        "sign_webhook",
    ]
    assert botbridge_bird.BirdChannel.name == "bird"
    assert set(botbridge_bird.BirdChannel.credential_keys) == {"access_key"}
    assert {"workspace_id", "channel_id", "base_url", "provision"} <= set(botbridge_bird.BirdChannel.config_keys)


@pytest.mark.parametrize("channel_on_install", [True, False])
async def test_a_channel_event_changes_only_the_sender_whose_connector_it_names(
    client: httpx.AsyncClient, fake: BirdFake, channel_on_install: bool
) -> None:
    # Without a channel id in the install answer, channel.created/updated go
    # workspace-wide to every installing sender: each must take only the news
    # about its own connector. With one, the news reaches its sender alone.
    fake.channels.clear()
    fake.channel_on_install = channel_on_install
    senders = []
    for number in ("+3197010250071", "+3197010250072"):
        body = sender_body(fake, provision=True, phone_number_id=fake.add_phone_number(number))
        body["config"]["channel_message_type"] = "transactional"
        body["webhook_secret"] = ""
        senders.append(await create_sender(client, {**body, "address": number}))
    mine, theirs = senders
    emission = await fake.complete_install(mine["config"]["connector_id"], ok=False, reason="number refused")
    assert emission is not None and emission.status_codes == ([200] if channel_on_install else [200, 200])
    current = {s["id"]: (await client.get(f"/v1/senders/{s['id']}")).json() for s in senders}
    assert (current[mine["id"]]["state"], current[mine["id"]]["state_reason"]) == ("failed", "number refused")
    assert current[theirs["id"]]["state"] == "pending"
    assert current[theirs["id"]]["config"] == theirs["config"]


async def test_six_senders_with_channels_each_get_filtered_subscriptions(
    client: httpx.AsyncClient, fake: BirdFake
) -> None:
    # At most 5 subscriptions per identical filter: unfiltered ones would stop the sixth sender.
    for index in range(6):
        number = f"+319701025010{index}"
        body = sender_body(fake, provision=True, channel_id=fake.add_channel("sms", number))
        body["webhook_secret"] = ""
        await create_sender(client, {**body, "address": number})
    assert len(fake.subscriptions) == 12
    assert all(s["eventFilters"] for s in fake.subscriptions.values())


async def test_six_senders_installing_at_once_stay_within_birds_limit(
    client: httpx.AsyncClient, fake: BirdFake
) -> None:
    # Bird allows at most 5 subscriptions per identical filter set: one
    # unfiltered channel.updated per installing sender stopped the sixth.
    fake.channels.clear()
    senders = []
    for index in range(6):
        number = f"+31970102502{index}"
        body = sender_body(fake, provision=True, phone_number_id=fake.add_phone_number(number))
        body["config"]["channel_message_type"] = "transactional"
        body["webhook_secret"] = ""
        senders.append(await create_sender(client, {**body, "address": number}))
    assert [s["state"] for s in senders] == ["pending"] * 6
    filter_sets = Counter(
        (s["event"], frozenset((f["key"], f["value"]) for f in s["eventFilters"])) for s in fake.subscriptions.values()
    )
    assert max(filter_sets.values()) == 1 and all(filters for _, filters in filter_sets)
    for sender in senders:
        # Each sender hears about its own channel only, and is active with it.
        emission = await fake.complete_install(sender["config"]["connector_id"])
        assert emission is not None and emission.status_codes == [200]
        current = (await client.get(f"/v1/senders/{sender['id']}")).json()
        channel_id = fake.connectors[sender["config"]["connector_id"]]["channel"]["channelId"]
        assert (current["state"], current["config"]["channel_id"]) == ("active", channel_id)
        inbound = await fake.emit_inbound(text="hi", contact="+15551230003", channel_id=channel_id)
        assert [r.json()["accepted"] for r in inbound.responses] == [1]
        assert str(inbound.responses[0].request.url) == sender["webhook_url"]


async def test_provisioning_refuses_public_urls_bird_cannot_call(fake: BirdFake, clock: FakeClock) -> None:
    for public_url in ("http://botbridge.example.com", "https://botbridge.example.com:8443", "https://10.1.2.3"):
        settings = Settings(
            store="memory://",
            api_keys=f"acct:{API_KEY}",  # type: ignore[arg-type]
            secret_key="x" * 32,  # type: ignore[arg-type]
            public_url=public_url,
        )
        bird_http = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app))
        app = create_app(settings, plugins=make_plugins(), http=bird_http, clock=clock)
        async with api_client(app, API_KEY) as c:
            body = sender_body(fake, provision=True, channel_id=next(iter(fake.channels)))
            body["webhook_secret"] = ""
            response = await c.post("/v1/senders", json=body)
            assert response.status_code == 422, response.text
            assert response.json()["error"]["details"][0]["field"] == "BOTBRIDGE_PUBLIC_URL"
            assert (await c.get("/v1/senders")).json()["items"] == []
    assert fake.subscriptions == {}


async def test_provisioning_needs_the_organization_id(client: httpx.AsyncClient, fake: BirdFake) -> None:
    body = sender_body(fake, provision=True, channel_id=next(iter(fake.channels)))
    del body["config"]["organization_id"]
    response = await client.post("/v1/senders", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "config.organization_id"


async def test_odd_types_in_sender_settings_are_422_naming_the_field(client: httpx.AsyncClient, fake: BirdFake) -> None:
    cases = [
        (sender_body(fake, channel_type=[]), "config.channel_type"),
        (sender_body(fake, channel_type={"sms": 1}), "config.channel_type"),
        (sender_body(fake, channel_id={}), "config.channel_id"),
        ({**sender_body(fake), "address": {}}, "address"),
    ]
    for body, field in cases:
        response = await client.post("/v1/senders", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["field"] == field
