"""The fake against Bird's documented shapes, errors and signing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from botbridge_bird.testing import BirdFake, compact

from .conftest import ACCESS_KEY, API_BASE

pytestmark = pytest.mark.anyio

AUTH = {"authorization": f"AccessKey {ACCESS_KEY}"}
DOC_SEND = {
    "receiver": {"contacts": [{"identifierKey": "phonenumber", "identifierValue": "+31612345678"}]},
    "body": {"type": "text", "text": {"text": "Hello from Bird"}},
    "reference": "order-1234",
}


@pytest.fixture
async def client(api: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    yield api


def messages_path(fake: BirdFake, channel_id: str) -> str:
    return f"/workspaces/{fake.workspace_id}/channels/{channel_id}/messages"


async def test_send_documented_example(fake: BirdFake, client: httpx.AsyncClient, channel_id: str) -> None:
    response = await client.post(messages_path(fake, channel_id), json=DOC_SEND, headers=AUTH)
    assert response.status_code == 202
    data = response.json()
    assert data["status"] == "accepted" and data["direction"] == "outgoing" and data["reference"] == "order-1234"
    assert data["channelId"] == channel_id and data["body"] == DOC_SEND["body"]
    assert data["receiver"]["contacts"][0]["identifierValue"] == "+31612345678"
    assert fake.sent[-1]["to"] == "+31612345678" and fake.sent[-1]["text"] == "Hello from Bird"
    again = await client.get(f"{messages_path(fake, channel_id)}/{data['id']}", headers=AUTH)
    assert again.json()["id"] == data["id"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "AccessKey wrong"},
        {"authorization": f"Bearer {ACCESS_KEY}"},
        {"authorization": ACCESS_KEY},
    ],
)
async def test_auth_is_required(fake: BirdFake, client: httpx.AsyncClient, channel_id: str, headers: dict) -> None:  # type: ignore[type-arg]
    response = await client.post(messages_path(fake, channel_id), json=DOC_SEND, headers=headers)
    assert response.status_code == 401
    assert set(response.json()) == {"code", "message"}
    assert fake.sent == []


async def test_unknown_or_malformed_ids_are_404(fake: BirdFake, client: httpx.AsyncClient, channel_id: str) -> None:
    other_ws = f"/workspaces/00000000-0000-4000-8000-000000000000/channels/{channel_id}/messages"
    for path in (
        other_ws,
        messages_path(fake, "not-a-uuid"),
        messages_path(fake, "00000000-0000-4000-8000-000000000001"),
    ):
        response = await client.post(path, json=DOC_SEND, headers=AUTH)
        assert response.status_code == 404 and response.json()["code"] == "NotFound"


def _with(**changes: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(DOC_SEND))
    for key, value in changes.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    return body


@pytest.mark.parametrize(
    "body",
    [
        _with(receiver=None),
        _with(receiver={"contacts": []}),
        _with(receiver={"contacts": [{"identifierKey": "phonenumber", "identifierValue": "0612345678"}]}),
        _with(receiver={"contacts": [{"identifierValue": "+31612345678"}]}),
        _with(body=None),
        _with(template={"projectId": "p"}),
        _with(body={"type": "text", "text": {"text": ""}}),
        _with(body={"type": "video", "video": {}}),
        _with(body={"type": "image", "image": {"images": [{"mediaUrl": "https://x.example/a.png"}]}}),
        _with(
            body={"type": "text", "text": {"text": "x", "actions": [{"type": "postback", "postback": {"text": "a"}}]}}
        ),
    ],
)
async def test_invalid_send_bodies_are_422(
    fake: BirdFake, client: httpx.AsyncClient, channel_id: str, body: dict
) -> None:  # type: ignore[type-arg]
    response = await client.post(messages_path(fake, channel_id), json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "InvalidPayload" and response.json()["details"]
    assert fake.sent == []


async def test_content_type_and_size(fake: BirdFake, client: httpx.AsyncClient, channel_id: str) -> None:
    path = messages_path(fake, channel_id)
    plain = await client.post(path, content=json.dumps(DOC_SEND), headers={**AUTH, "content-type": "text/plain"})
    assert plain.status_code == 415
    huge = _with(body={"type": "text", "text": {"text": "x" * (201 * 1024)}})
    assert (await client.post(path, json=huge, headers=AUTH)).status_code == 413
    assert (
        await client.post(path, content=b"{nope", headers={**AUTH, "content-type": "application/json"})
    ).status_code == 400


async def test_injected_failures(fake: BirdFake, client: httpx.AsyncClient, channel_id: str) -> None:
    fake.fail_next(429, retry_after=2, path="/messages")
    first = await client.post(messages_path(fake, channel_id), json=DOC_SEND, headers=AUTH)
    assert first.status_code == 429 and first.headers["retry-after"] == "2"
    assert (await client.post(messages_path(fake, channel_id), json=DOC_SEND, headers=AUTH)).status_code == 202


async def test_connectors(fake: BirdFake, client: httpx.AsyncClient) -> None:
    base = f"/workspaces/{fake.workspace_id}/connectors"
    number_id = fake.add_phone_number("+3197010250055")
    good = {
        "connectorTemplateRef": "sms-messagebird:1",
        "name": "My SMS channel",
        "arguments": {"phoneNumberId": number_id, "channelMessageType": "promotional"},
    }
    for broken in (
        {**good, "name": ""},
        {**good, "connectorTemplateRef": "pager:1"},
        {**good, "arguments": {"channelMessageType": "promotional"}},
        {**good, "arguments": {"phoneNumberId": number_id}},
        {**good, "arguments": {"phoneNumberId": "00000000-0000-4000-8000-000000000009", "channelMessageType": "p"}},
    ):
        assert (await client.post(base, json=broken, headers=AUTH)).status_code == 422
    created = await client.post(base, json=good, headers=AUTH)
    assert created.status_code == 200
    connector = created.json()
    # The install answer names the channel (docs.bird.com "Installing an SMS
    # channel"), which refuses sends until the install completes.
    assert connector["status"] == "pending" and connector["channel"]["platform"] == "sms"
    channel_id = connector["channel"]["channelId"]
    early = await client.post(messages_path(fake, channel_id), json=DOC_SEND, headers=AUTH)
    assert early.status_code == 409 and fake.sent == []
    await fake.complete_install(connector["id"], emit=False)
    installed = (await client.get(f"{base}/{connector['id']}", headers=AUTH)).json()
    assert installed["status"] == "active" and installed["channel"]["channelId"] == channel_id
    assert fake.channels[channel_id]["identifier"] == "+3197010250055"
    assert (await client.post(messages_path(fake, channel_id), json=DOC_SEND, headers=AUTH)).status_code == 202
    fake.channel_on_install = False  # the other documented case: no channel until the install is done
    later = (await client.post(base, json=good, headers=AUTH)).json()
    assert later["channel"] is None
    await fake.complete_install(later["id"], emit=False)
    assert fake.connectors[later["id"]]["channel"]["channelId"] in fake.channels
    await client.delete(f"{base}/{later['id']}", headers=AUTH)
    listed = await client.get(base, params={"templateRef": "sms-messagebird:1"}, headers=AUTH)
    assert [c["id"] for c in listed.json()["results"]] == [connector["id"]]
    assert (await client.get(base, params={"templateRef": "whatsapp:1"}, headers=AUTH)).json() == {"results": []}
    assert (await client.delete(f"{base}/{connector['id']}", headers=AUTH)).status_code == 204
    gone = await client.post(messages_path(fake, channel_id), json=DOC_SEND, headers=AUTH)
    assert gone.status_code == 404
    assert (await client.get(f"{base}/{connector['id']}", headers=AUTH)).status_code == 404


async def test_webhook_subscriptions(fake: BirdFake, client: httpx.AsyncClient, channel_id: str) -> None:
    ws_path = f"/workspaces/{fake.workspace_id}/webhook-subscriptions"
    org_path = f"/organizations/{fake.organization_id}{ws_path}"
    good = {
        "service": "channels",
        "event": "sms.inbound",
        "url": "https://example.com/bird/webhook",
        "signingKey": "a-long-random-secret",
        "eventFilters": [{"key": "channelId", "value": channel_id}],
    }
    # The Notifications API has no workspace-only path.
    assert (await client.post(ws_path, json=good, headers=AUTH)).status_code in (404, 405)
    for broken in (
        {**good, "service": "numbers"},
        {**good, "event": "message.created"},
        {**good, "url": "/relative"},
        # docs.bird.com "Create a webhook subscription": https, a hostname, no port
        {**good, "url": "http://example.com/bird/webhook"},
        {**good, "url": "https://example.com:8443/bird/webhook"},
        {**good, "url": "https://127.0.0.1/bird/webhook"},
        {**good, "eventFilters": [{"key": "channelId", "value": "a"}, {"key": "channelId", "value": "b"}]},
    ):
        assert (await client.post(org_path, json=broken, headers=AUTH)).status_code == 422, broken
    ids = []
    for _ in range(5):
        created = await client.post(org_path, json=good, headers=AUTH)
        assert created.status_code == 201 and "signingKey" not in created.json()
        ids.append(created.json()["id"])
    assert (await client.post(org_path, json=good, headers=AUTH)).status_code == 409
    unfiltered = {**good, "event": "channel.updated", "eventFilters": []}
    created = await client.post(org_path, json=unfiltered, headers=AUTH)
    assert created.status_code == 201
    wrong_org = f"/organizations/00000000-0000-4000-8000-000000000000{ws_path}"
    assert (await client.post(wrong_org, json=good, headers=AUTH)).status_code == 404
    assert len((await client.get(org_path, headers=AUTH)).json()["results"]) == 6

    # PATCH narrows a subscription, within the same limit per identical filter.
    narrowed = await client.patch(
        f"{org_path}/{created.json()['id']}", json={"eventFilters": good["eventFilters"]}, headers=AUTH
    )
    assert narrowed.status_code == 200 and narrowed.json()["eventFilters"] == good["eventFilters"]
    event_moved = await client.patch(f"{org_path}/{ids[0]}", json={"event": "sms.outbound"}, headers=AUTH)
    assert event_moved.status_code == 422
    bad_url = await client.patch(f"{org_path}/{ids[0]}", json={"url": "http://example.com/x"}, headers=AUTH)
    assert bad_url.status_code == 422
    for _ in range(4):
        await client.post(org_path, json=unfiltered, headers=AUTH)
    back = await client.patch(f"{org_path}/{created.json()['id']}", json={"eventFilters": []}, headers=AUTH)
    assert back.status_code == 200  # 4 others + itself = 5
    sixth = await client.patch(f"{org_path}/{ids[1]}", json={"eventFilters": []}, headers=AUTH)
    assert sixth.status_code == 200  # a different event: its own count
    assert (await client.delete(f"{org_path}/{ids[0]}", headers=AUTH)).status_code == 204
    assert (await client.delete(f"{org_path}/{ids[0]}", headers=AUTH)).status_code == 404
    assert (await client.patch(f"{org_path}/{ids[0]}", json={"eventFilters": []}, headers=AUTH)).status_code == 404


async def test_files_need_a_content_type_and_nothing_else(
    fake: BirdFake, client: httpx.AsyncClient, channel_id: str
) -> None:
    fake.channels[channel_id]["platformId"] = "whatsapp"
    path = f"/workspaces/{fake.workspace_id}/channels/{channel_id}/messages"
    receiver = {"contacts": [{"identifierKey": "phonenumber", "identifierValue": "+31612345678"}]}
    item = {"mediaUrl": "https://cdn.example/doc", "contentType": "application/pdf", "filename": "doc"}
    ok = {"receiver": receiver, "body": {"type": "file", "file": {"files": [item]}}}
    assert (await client.post(path, json=ok, headers=AUTH)).status_code == 202
    for broken in (
        {"mediaUrl": "https://cdn.example/doc"},
        {**item, "contentType": ""},
        {**item, "caption": "x"},
    ):
        body = {"receiver": receiver, "body": {"type": "file", "file": {"files": [broken]}}}
        assert (await client.post(path, json=body, headers=AUTH)).status_code == 422, broken
    blank = {"receiver": receiver, "body": {"type": "text", "text": {"text": " "}}}
    assert (await client.post(path, json=blank, headers=AUTH)).status_code == 422
    action = {"type": "postback", "postback": {"text": "Yes", "payload": "y"}}
    image = {"images": [{"mediaUrl": "https://cdn.example/a.png"}], "actions": [action]}
    with_buttons = {"receiver": receiver, "body": {"type": "image", "image": image}}
    assert (await client.post(path, json=with_buttons, headers=AUTH)).status_code == 202
    fake.hosted_media["/doc"] = "application/pdf"
    head = await client.head("https://cdn.example/doc")
    assert head.status_code == 200 and head.headers["content-type"] == "application/pdf"
    assert (await client.head("https://cdn.example/missing")).status_code == 404


async def test_reference_vector_signature_from_the_fake() -> None:
    fake = BirdFake()
    body = compact(
        {
            "service": "channels",
            "event": "sms.inbound",
            "payload": {
                "id": "96a0b5fa-a986-453d-be5c-3117f989f025",
                "channelId": "614208aa-b153-4d5d-9989-2fddfc0ce4c3",
                "sender": {
                    "contact": {
                        "id": "32cf5eee-f940-422c-ab8c-5f753aad5efd",
                        "identifierKey": "phonenumber",
                        "identifierValue": "+31612345678",
                    }
                },
                "receiver": {"connector": {"id": "86cc4dc0-3dc0-41b7-ac43-8ec829ead56f"}},
                "body": {"type": "text", "text": {"text": "Sample incoming text message"}},
                "parts": [{"platformReference": "e8077d803532c0b5937c639b60216938"}],
                "status": "delivered",
                "direction": "incoming",
                "lastStatusAt": "2022-12-22T08:32:50.736Z",
                "createdAt": "2022-12-22T08:32:50.736Z",
                "updatedAt": "2022-12-22T08:32:50.736Z",
            },
        }
    )
    headers = fake.signed_headers(body, "https://domain.com/webhook/bird", "secureSigningKey", 1719823259)
    assert headers["messagebird-signature"] == "uhWNvwDhRK+o5oXUe3Xm/u4S7WdFg6YRSBLtQtECM8Q="
    assert headers["messagebird-request-timestamp"] == "1719823259"


async def test_emitter_retries_and_duplicates_reuse_the_signature(fake: BirdFake, channel_id: str) -> None:
    seen: list[httpx.Request] = []
    answers = iter([500, 200, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(next(answers))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        fake.http = http
        fake.delivery_attempts = 3
        fake.duplicate_deliveries = True
        fake.subscriptions["s"] = {
            "event": "sms.inbound",
            "url": "https://hook.example/a",
            "signingKey": "k",
            "eventFilters": [{"key": "channelId", "value": channel_id}],
        }
        emission = await fake.emit_inbound(text="hi", contact="+31600000001")
        other = await fake.emit_inbound(text="hi", channel_id="00000000-0000-4000-8000-000000000000")
    assert emission.status_codes == [500, 200, 200]
    assert other.responses == []
    assert len({r.headers["messagebird-signature"] for r in seen}) == 1
    assert len({r.headers["messagebird-request-timestamp"] for r in seen}) == 1
    assert all(r.content == emission.body for r in seen)


async def test_status_events_follow_sent_messages(fake: BirdFake, client: httpx.AsyncClient, channel_id: str) -> None:
    sent = (await client.post(messages_path(fake, channel_id), json=DOC_SEND, headers=AUTH)).json()
    event = fake.status_event(sent["id"], "delivery_failed", reason="unreachable")
    assert event["event"] == "sms.outbound"
    assert event["payload"]["id"] == sent["id"] and event["payload"]["reference"] == "order-1234"
    assert event["payload"]["reason"] == "unreachable"
    current = (await client.get(f"{messages_path(fake, channel_id)}/{sent['id']}", headers=AUTH)).json()
    assert current["status"] == "delivery_failed"
    assert API_BASE.startswith("https://")
