"""The channel through the real host: senders, webhooks, dedupe, provisioning."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import botbridge_scg.plugin
from botbridge.clock import FakeClock
from botbridge.host import create_app
from botbridge.plugins import Plugins
from botbridge.settings import Settings
from botbridge.stores import memory
from botbridge.testing import api_client
from botbridge_scg.testing import EssAuth, FakeScg, delivered

pytestmark = pytest.mark.anyio

API_KEY = "key-123456"
HOST = "http://botbridge.test"


def make_plugins() -> Plugins:
    plugins = Plugins()
    plugins.add(memory, "memory", builtin=True)
    plugins.add(botbridge_scg.plugin, "scg")
    plugins.collect()
    return plugins


@pytest.fixture
async def client(fake: FakeScg) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(store="memory://", api_keys=f"acct:{API_KEY}", secret_key="x" * 32)  # type: ignore[arg-type]
    app = create_app(
        settings,
        plugins=make_plugins(),
        http=httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)),
        clock=FakeClock(),
    )
    async with api_client(app, API_KEY) as c:
        yield c


def sender_body(consts: Any, **changes: Any) -> dict[str, Any]:
    body = {
        "channel": "scg",
        "address": consts.address,
        "credentials": consts.token,
        "webhook_secret": consts.secret,
        "config": {"base_url": consts.base_url, "channel_type": "sms"},
    }
    body.update(changes)
    return body


async def create_sender(client: httpx.AsyncClient, consts: Any, **changes: Any) -> dict[str, Any]:
    response = await client.post("/v1/senders", json=sender_body(consts, **changes))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_discovery_finds_the_entry_point() -> None:
    plugins = Plugins.discover(Settings(load_plugins="scg"))  # type: ignore[call-arg]
    assert plugins.channels["scg"].__name__ == "ScgChannel"
    info = plugins.infos["scg"]
    assert info.distribution == "botbridge-scg"
    assert info.channels == ["scg"]
    assert info.errors == []


async def test_plugins_endpoint_lists_the_channel(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/plugins")
    assert response.status_code == 200
    assert "scg" in response.text


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"credentials": ""}, "credentials.token"),
        ({"credentials": {"token": ""}}, "credentials.token"),
        ({"webhook_secret": ""}, "webhook_secret"),
        ({"config": {"from": "+15550001111"}}, "config.from"),
        ({"config": {"channel_type": "pager"}}, "config.channel_type"),
    ],
)
async def test_invalid_senders_are_422_with_the_field(client, consts, changes, field) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/v1/senders", json=sender_body(consts, **changes))
    assert response.status_code == 422
    assert field in [d["field"] for d in response.json()["error"]["details"]]
    assert consts.token not in response.text


async def test_signed_webhook_is_accepted_and_refusals_are_401(client, consts, fake) -> None:  # type: ignore[no-untyped-def]
    sender = await create_sender(client, consts, credentials={"token": consts.token})
    assert "credentials" not in sender and "webhook_secret" not in sender
    url = sender["webhook_url"]
    body = fake.encode(fake.mo_event("Hello", "+15551230001", consts.address))
    headers = fake.headers(fake.mo_event("x", "+15551230001"), EssAuth.bearer(consts.secret))

    response = await client.post(url, content=body, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "accepted": 1, "duplicates": 0}

    again = await client.post(url, content=body, headers=headers)
    assert again.status_code == 200
    assert again.json() == {"status": "accepted", "accepted": 0, "duplicates": 1}

    token = headers["Authorization"]
    changed = token[:-1] + chr(ord(token[-1]) ^ 1)
    basic = "Basic " + base64.b64encode(f"u:{consts.secret}x".encode()).decode()
    for refused in (
        {**headers, "Authorization": changed},
        {**headers, "Authorization": basic},
        {k: v for k, v in headers.items() if k != "Authorization"},
    ):
        response = await client.post(url, content=body, headers=refused)
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["code"] == "invalid_signature"
        assert consts.secret not in response.text

    malformed = await client.post(url, content=b"{not json", headers=headers)
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "malformed_webhook"

    unknown = await client.post("/v1/webhooks/scg/NoSuchSender0000000000", content=body, headers=headers)
    assert unknown.status_code == 404


async def test_ess_duplicates_and_retries_through_the_host(client, consts, fake) -> None:  # type: ignore[no-untyped-def]
    sender = await create_sender(client, consts)
    fake.duplicate = True
    attempts = await fake.emit_inbound(
        HOST + sender["webhook_url"],
        text="hi",
        contact="+15551230001",
        auth=EssAuth.bearer(consts.secret),
        client=client,
    )
    assert [a.status for a in attempts] == [200, 200]
    fake.duplicate = False
    refused = await fake.emit_inbound(
        HOST + sender["webhook_url"],
        text="hi",
        contact="+15551230001",
        auth=EssAuth.bearer("wrong-secret"),
        client=client,
    )
    assert [a.status for a in refused] == [401] * fake.max_attempts


async def test_report_for_a_sent_message_through_the_host(client, consts, fake) -> None:  # type: ignore[no-untyped-def]
    sender = await create_sender(client, consts)
    # a message SCG accepted (the channel's send is exercised in test_channel)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=consts.base_url) as api:
        sent = await api.post(
            "/scg-external-api/api/v1/messaging/message_requests",
            json={"from": consts.address, "to": ["+15551230002"], "body": "x"},
            headers={"authorization": f"Bearer {consts.token}"},
        )
    request_id = sent.json()["id"]
    fake.out_of_order = True
    attempts = await fake.emit_lifecycle(
        HOST + sender["webhook_url"],
        request_id,
        ("SENT", "DELIVERED"),
        auth=EssAuth.bearer(consts.secret),
        client=client,
    )
    assert [a.status for a in delivered(attempts)] == [200, 200]


async def test_provisioning_round_trip(client, consts, fake) -> None:  # type: ignore[no-untyped-def]
    body = sender_body(consts)
    body["config"] = {**body["config"], "provision": True, "webhook_username": "syniverse"}
    response = await client.post("/v1/senders", json=body)
    assert response.status_code == 201, response.text
    sender = response.json()
    description = sender["config"]["ess_delivery_configuration"]
    assert description["addr"] == sender["webhook_url"]
    assert description["auth"] == {"type": "BASIC", "username": "syniverse", "password": "<webhook_secret>"}
    assert consts.secret not in response.text

    # The operator enters the description, with their secret, in SCG; ESS then delivers with it.
    entered = {**description["auth"], "password": consts.secret}
    config_id = fake.add_delivery_configuration({**description, "auth": entered, "addr": HOST + description["addr"]})
    url, auth = fake.target(config_id)
    attempts = await fake.emit_inbound(url, text="hello", contact="+15551230001", auth=auth, client=client)
    assert [a.status for a in attempts] == [200]

    # Updating the sender keeps the provisioned config valid.
    update = await client.patch(f"/v1/senders/{sender['id']}", json={"address": consts.address})
    assert update.status_code == 200, update.text
    assert update.json()["config"]["ess_delivery_configuration"] == description

    deleted = await client.delete(f"/v1/senders/{sender['id']}")
    assert deleted.status_code == 204
    gone = await fake.emit_inbound(url, text="hello", contact="+15551230001", auth=auth, client=client)
    assert [a.status for a in gone] == [404] * fake.max_attempts
