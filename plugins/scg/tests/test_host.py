"""The channel through the real host: senders, webhooks, dedupe, provisioning."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

import botbridge_scg.plugin
from botbridge.channel import WebhookRequest
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
        "config": {"base_url": consts.base_url, "channel_type": "sms", "from": consts.sender_from},
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
    headers = fake.headers(fake.mo_event("x", "+15551230001"), EssAuth.basic(consts.secret))

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
        # ESS has no static bearer: the secret as a bearer token is refused.
        {**headers, "Authorization": f"Bearer {consts.secret}"},
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
        auth=EssAuth.basic(consts.secret),
        client=client,
    )
    assert [a.status for a in attempts] == [200, 200]
    fake.duplicate = False
    refused = await fake.emit_inbound(
        HOST + sender["webhook_url"],
        text="hi",
        contact="+15551230001",
        auth=EssAuth.basic("wrong-secret"),
        client=client,
    )
    assert [a.status for a in refused] == [401] * fake.max_attempts


async def test_report_for_a_sent_message_through_the_host(client, consts, fake) -> None:  # type: ignore[no-untyped-def]
    sender = await create_sender(client, consts)
    # a message SCG accepted (the channel's send is exercised in test_channel)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=consts.base_url) as api:
        sent = await api.post(
            "/scg-external-api/api/v1/messaging/message_requests",
            json={"from": consts.sender_from, "to": ["+15551230002"], "body": "x"},
            headers={"authorization": f"Bearer {consts.token}"},
        )
    request_id = sent.json()["id"]
    fake.out_of_order = True
    attempts = await fake.emit_lifecycle(
        HOST + sender["webhook_url"],
        request_id,
        ("SENT", "DELIVERED"),
        auth=EssAuth.basic(consts.secret),
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


@pytest.fixture
async def host(fake: FakeScg) -> AsyncIterator[tuple[Any, httpx.AsyncClient, FakeClock]]:
    settings = Settings(store="memory://", api_keys=f"acct:{API_KEY}", secret_key="x" * 32)  # type: ignore[arg-type]
    clock = FakeClock()
    app = create_app(
        settings,
        plugins=make_plugins(),
        http=httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)),
        clock=clock,
    )
    async with api_client(app, API_KEY) as c:
        yield app.state.runtime, c, clock


async def test_oauth2_delivery_configuration_through_the_host(host, consts, fake) -> None:  # type: ignore[no-untyped-def]
    _rt, client, clock = host
    body = sender_body(consts)
    body["config"] = {**body["config"], "provision": True, "webhook_auth": "oauth2", "oauth_client_id": "ess-client"}
    response = await client.post("/v1/senders", json=body)
    assert response.status_code == 201, response.text
    sender = response.json()
    description = sender["config"]["ess_delivery_configuration"]
    assert description["auth"]["type"] == "OAUTH2"
    assert consts.secret not in response.text

    # The operator enters it in SCG with the client secret; ESS fetches tokens from our endpoint.
    auth = {**description["auth"], "client_secret": consts.secret, "token_url": HOST + description["auth"]["token_url"]}
    config_id = fake.add_delivery_configuration({**description, "auth": auth, "addr": HOST + description["addr"]})
    url, ess = fake.target(config_id)
    attempts = await fake.emit_inbound(url, text="hello", contact="+15551230001", auth=ess, client=client)
    assert [a.status for a in attempts] == [200]

    token_url = auth["token_url"]
    form = {"content-type": "application/x-www-form-urlencoded"}
    issued = await client.post(
        token_url, content=b"grant_type=client_credentials", headers={**form, **basic_auth("ess-client", consts.secret)}
    )
    assert issued.status_code == 200
    assert issued.headers["cache-control"] == "no-store"
    grant = issued.json()
    assert grant["token_type"] == "Bearer" and 0 < grant["expires_in"] <= 3600
    assert consts.secret not in issued.text
    # Client credentials in the body are accepted too (RFC 6749 §2.3.1).
    in_body = b"grant_type=client_credentials&client_id=ess-client&client_secret=" + consts.secret.encode()
    assert (await client.post(token_url, content=in_body, headers=form)).status_code == 200

    for headers, content, status, error in (
        (basic_auth("ess-client", "wrong-secret-000000"), b"grant_type=client_credentials", 401, "invalid_client"),
        (basic_auth("other-client", consts.secret), b"grant_type=client_credentials", 401, "invalid_client"),
        ({}, b"grant_type=client_credentials", 401, "invalid_client"),
        (basic_auth("ess-client", consts.secret), b"grant_type=password", 400, "unsupported_grant_type"),
    ):
        refused = await client.post(token_url, content=content, headers={**form, **headers})
        assert (refused.status_code, refused.json()["error"]) == (status, error)
        assert consts.secret not in refused.text

    mo = fake.encode(fake.mo_event("x", "+15551230001"))
    bearer = {"authorization": f"Bearer {grant['access_token']}", "content-type": "application/json"}
    assert (await client.post(HOST + sender["webhook_url"], content=mo, headers=bearer)).status_code == 200
    # Neither Basic nor the secret as a static bearer works for an OAuth 2.0 sender.
    for wrong in (basic_auth("ess-client", consts.secret)["Authorization"], f"Bearer {consts.secret}"):
        response = await client.post(
            HOST + sender["webhook_url"], content=mo, headers={**bearer, "authorization": wrong}
        )
        assert response.status_code == 401
    # Tokens are short-lived.
    clock.advance(3601)
    assert (await client.post(HOST + sender["webhook_url"], content=mo, headers=bearer)).status_code == 401


async def test_token_endpoint_exists_only_for_oauth2_senders(client, consts) -> None:  # type: ignore[no-untyped-def]
    sender = await create_sender(client, consts)
    response = await client.post(
        sender["webhook_url"] + "/oauth/token",
        content=b"grant_type=client_credentials",
        headers={"content-type": "application/x-www-form-urlencoded", **basic_auth(sender["id"], consts.secret)},
    )
    assert response.status_code == 404
    assert (await client.get(sender["webhook_url"] + "/nothing-here")).status_code == 404


async def test_inbound_attachments_are_served_by_the_host(host, consts, fake) -> None:  # type: ignore[no-untyped-def]
    rt, client, clock = host
    sender = await create_sender(client, consts)
    attachment = fake.add_attachment(b"\x89PNG-bytes", "image/png")
    context = rt.sender_context(await rt.cache.sender(sender["id"]))
    body = fake.encode(fake.mo_event("see this", "+15551230001", attachment_ids=[attachment]))
    request = WebhookRequest(
        "POST",
        HOST + sender["webhook_url"],
        fake.headers(fake.mo_event("x", "+1"), None)
        | {"authorization": basic_auth("syniverse", consts.secret)["Authorization"]},
        body,
    )
    [message] = (await rt.channel("scg").parse_webhook(request, context)).messages
    [media] = message.media
    assert media.url.startswith(sender["webhook_url"] + "/attachments/")

    served = await client.get(media.url)  # no SCG token needed: the host fetches with it
    assert served.status_code == 200
    assert served.content == b"\x89PNG-bytes"
    assert served.headers["content-type"] == "image/png"
    assert served.headers["content-disposition"] == "attachment"
    content_fetches = [r for r in fake.requests_seen if r["path"].endswith(f"/attachments/{attachment}/content")]
    assert content_fetches[-1]["authorization"] == f"Bearer {consts.token}"

    head, _, token = media.url.rpartition("/")
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert (await client.get(f"{head}/{forged}")).status_code == 404
    # Another sender cannot use the link.
    other = await create_sender(client, consts, address="+15550002222")
    assert (await client.get(f"{other['webhook_url']}/attachments/{token}")).status_code == 404
    fake.attachments.clear()
    assert (await client.get(media.url)).status_code == 404
    clock.advance(24 * 3600 + 1)
    fake.add_attachment(b"x")
    assert (await client.get(media.url)).status_code == 404  # expired


def basic_auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_a_lost_send_answer_is_looked_up_not_sent_twice(host, consts, fake) -> None:  # type: ignore[no-untyped-def]
    # SCG accepts the request and the answer is lost (502): core asks find_sent, the user gets one SMS.
    _rt, client, clock = host
    sender = await create_sender(client, consts)
    fake.lost_answers = 1
    response = await client.post("/v1/messages", json={"sender_id": sender["id"], "to": "+15551230002", "text": "once"})
    assert response.status_code == 202, response.text
    message_id = response.json()["id"]
    final: dict[str, Any] = {}
    for _ in range(500):
        final = (await client.get(f"/v1/messages/{message_id}")).json()
        if final["provider_message_id"] or final["state"] == "FAILED":
            break
        clock.advance(5)  # past the engine's backoff before it asks SCG
        await anyio.sleep(0.01)
    assert len(fake.sent) == 1
    assert final["provider_message_id"] == fake.sent[0]["message_request_id"]
    assert final["state"] != "FAILED"
    lookups = [r for r in fake.requests_seen if r["method"] == "GET" and r["path"].endswith("/messaging/messages")]
    assert len(lookups) == 1
