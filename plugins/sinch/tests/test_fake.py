"""The strict fake answers as the Sinch Conversation API documents."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from botbridge.clock import FakeClock
from botbridge_sinch import sign_callback
from botbridge_sinch.testing import FakeSinch, main, new_ulid

from .sdk_oracle import assert_sdk_accepts_send, sdk_event

pytestmark = pytest.mark.anyio

API = "https://us.conversation.api.sinch.com"
VECTOR = (Path(__file__).parent / "vectors" / "sinch_inbound_body.json").read_bytes()
# The body the official SDK produces for a choice message (reference §1.3).
SDK_BODY: dict[str, Any] = {
    "app_id": "01H3ZXAMPLEAPP00000000000",
    "recipient": {
        "identified_by": {
            "channel_identities": [
                {"channel": "WHATSAPP", "identity": "46701234567"},
                {"channel": "SMS", "identity": "46701234567"},
            ]
        }
    },
    "message": {
        "choice_message": {
            "choices": [
                {"postback_data": "confirm", "text_message": {"text": "Yes"}},
                {"postback_data": "cancel", "text_message": {"text": "No"}},
            ],
            "text_message": {"text": "Confirm your booking?"},
        }
    },
    "ttl": "60s",
    "callback_url": "https://example.com/sinch/dr",
    "channel_priority_order": ["WHATSAPP", "SMS"],
    "channel_properties": {"SMS_SENDER": "+46700000000"},
    "message_metadata": "order-1234",
    "correlation_id": "order-1234",
}


def basic(key_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key_id}:{secret}".encode()).decode()


async def token(http: httpx.AsyncClient, fake: FakeSinch) -> str:
    response = await http.post(
        "https://auth.sinch.com/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"authorization": basic(fake.key_id, fake.key_secret)},
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "scope", "token_type"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    return str(body["access_token"])


async def send(http: httpx.AsyncClient, fake: FakeSinch, body: Any, bearer: str | None = None) -> httpx.Response:
    bearer = bearer or await token(http, fake)
    return await http.post(
        f"{API}/v1/projects/{fake.project_id}/messages:send", json=body, headers={"authorization": f"Bearer {bearer}"}
    )


def test_signing_reproduces_the_reference_vectors() -> None:
    body_a = (
        b'{"app_id":"01EB37HMH1M6SV18BSNS3G135H","accepted_time":"2020-11-17T15:09:11.659Z",'
        b'"project_id":"c36f3d3d-1513-2edd-ae42-11995557ff61","message_delivery_report":'
        b'{"message_id":"01EQBC1A3BEK731GY4YXEN0C2R","conversation_id":"01EPYATA64TMNZ1FV02JKF12JF",'
        b'"status":"QUEUED_ON_CHANNEL","contact_id":"01EXA07N79THJ20WSN6AS30TMW"}}'
    )
    assert (
        sign_callback("foo_secret1234", body_a, "01FJA8B4A7BM43YGWSG9GBV067", "1634579353")
        == "Yc+3R1pIS78xLASybulhs8BsSo9BPB3Pr92QCUoczfk="
    )
    fake = FakeSinch(webhook_secret="my-webhook-secret")
    headers = fake.sign(VECTOR, nonce="01HWXYZNONCE00000000000000", timestamp=1714644930)
    assert headers["x-sinch-webhook-signature"] == "8xVxg/z4I0Y1cI1ZOlGPsmeutsiXO5T/K+Ae/xDxcBU="
    assert headers["x-sinch-webhook-signature-algorithm"] == "HmacSHA256"


def test_ulids_look_like_sinch_ids() -> None:
    ids = {new_ulid() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 26 and i.isalnum() and i.isupper() for i in ids)


async def test_token_endpoint_checks_client_credentials(fake: FakeSinch, http: httpx.AsyncClient) -> None:
    url = "https://auth.sinch.com/oauth2/token"
    good = basic(fake.key_id, fake.key_secret)
    bad_secret = await http.post(
        url, data={"grant_type": "client_credentials"}, headers={"authorization": basic(fake.key_id, "nope")}
    )
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
    no_auth = await http.post(url, data={"grant_type": "client_credentials"})
    assert no_auth.status_code == 401
    wrong_grant = await http.post(url, data={"grant_type": "password"}, headers={"authorization": good})
    assert wrong_grant.status_code == 400 and "error_description" in wrong_grant.json()
    as_json = await http.post(url, json={"grant_type": "client_credentials"}, headers={"authorization": good})
    assert as_json.status_code == 400
    assert await token(http, fake)


async def test_sdk_shaped_request_is_accepted_and_recorded(fake: FakeSinch, http: httpx.AsyncClient) -> None:
    response = await send(http, fake, SDK_BODY)
    assert response.status_code == 200
    body = response.json()
    assert len(body["message_id"]) == 26 and body["accepted_time"].endswith("Z")
    [record] = fake.sent
    assert record["to"] == "46701234567" and record["channel"] == "WHATSAPP"
    assert record["text"] == "Confirm your booking?"
    media = {"app_id": fake.app_id, "recipient": {"contact_id": "C"}, "message": {"media_message": {"url": "u"}}}
    assert (await send(http, fake, media)).status_code == 200
    assert fake.sent[-1]["to"] == "C"


TEXT_CHOICE = {"text_message": {"text": "a"}}
LONG_CHOICE = {"text_message": {"text": "x" * 21}}
MMS_BODY: dict[str, Any] = {
    **SDK_BODY,
    "recipient": {"identified_by": {"channel_identities": [{"channel": "MMS", "identity": "46701234567"}]}},
    "channel_priority_order": ["MMS"],
    "message": {"text_message": {"text": "pic"}},
}


async def test_cards_and_mms_senders_the_sdk_accepts_pass(fake: FakeSinch, http: httpx.AsyncClient) -> None:
    card = {"card_message": {"media_message": {"url": "https://x/a.png"}, "description": "d", "choices": []}}
    cards = [{"media_message": {"url": f"https://x/{i}.png"}, "description": str(i)} for i in range(10)]
    carousel = {"carousel_message": {"cards": cards, "choices": [TEXT_CHOICE] * 3}}
    for body in (
        {**MMS_BODY, "channel_properties": {"MMS_SENDER": "+46700000000"}},
        {**SDK_BODY, "message": card},
        {**SDK_BODY, "message": carousel},
        {**MMS_BODY, "message": card, "channel_properties": {"MMS_SENDER": "+46700000000"}},
    ):
        assert (await send(http, fake, body)).status_code == 200
        assert_sdk_accepts_send(body)


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in SDK_BODY.items() if k != key}


@pytest.mark.parametrize(
    "body",
    [
        _without("app_id"),
        {**SDK_BODY, "app_id": "OTHER"},
        _without("recipient"),
        {**SDK_BODY, "recipient": {"contact_id": "C", "identified_by": SDK_BODY["recipient"]["identified_by"]}},
        {**SDK_BODY, "recipient": {"identified_by": {"channel_identities": []}}},
        {**SDK_BODY, "recipient": {"identified_by": {"channel_identities": [{"channel": "PIGEON", "identity": "1"}]}}},
        {**SDK_BODY, "recipient": {"identified_by": {"channel_identities": [{"channel": "SMS", "identity": ""}]}}},
        _without("message"),
        {**SDK_BODY, "message": {"text_message": {"text": "a"}, "media_message": {"url": "u"}}},
        {**SDK_BODY, "message": {"text_message": {"text": ""}}},
        {**SDK_BODY, "message": {"media_message": {}}},
        {**SDK_BODY, "message": {"choice_message": {"choices": []}}},
        {
            **SDK_BODY,
            "message": {"choice_message": {"choices": [{"text_message": {"text": str(i)}} for i in range(11)]}},
        },
        {
            **SDK_BODY,
            "message": {"choice_message": {"choices": [{"text_message": {"text": "a"}, "url_message": {"url": "u"}}]}},
        },
        {**SDK_BODY, "channel_priority_order": ["RCS"]},
        {**SDK_BODY, "ttl": "60"},
        {**SDK_BODY, "correlation_id": "x" * 129},
        {**SDK_BODY, "message_metadata": "x" * 1025},
        {**SDK_BODY, "unexpected": True},
        ["not", "an", "object"],
        # MMS's sender property is MMS_SENDER (Sinch MMS channel docs)
        {**MMS_BODY, "channel_properties": {"SMS_SENDER": "+46700000000"}},
        # WhatsApp reply buttons: at most 3, titles of at most 20 characters
        {
            **SDK_BODY,
            "message": {"choice_message": {"choices": [{"text_message": {"text": str(i)}} for i in range(4)]}},
        },
        {**SDK_BODY, "message": {"choice_message": {"choices": [{"text_message": {"text": "x" * 21}}]}}},
        {
            **SDK_BODY,
            "message": {"card_message": {"description": "d", "choices": [{"text_message": {"text": "x" * 21}}]}},
        },
        # SDK `MediaProperties`: one url, a string; nothing else but a thumbnail and a file name
        {**SDK_BODY, "message": {"media_message": {"url": "https://x/a.png", "urls": ["https://x/b.png"]}}},
        {**SDK_BODY, "message": {"media_message": {"url": "https://x/a.png", "caption": "c"}}},
        {**SDK_BODY, "message": {"card_message": {"media_message": {"url": "u", "extra_url": "v"}}}},
        # Sinch "Carousel message": 1 to 10 cards, each a card; at most 3 outer choices
        {**SDK_BODY, "message": {"carousel_message": {"cards": []}}},
        {**SDK_BODY, "message": {"carousel_message": {"cards": [{"description": str(i)} for i in range(11)]}}},
        {**SDK_BODY, "message": {"carousel_message": {"cards": [{"caption": "c"}]}}},
        {
            **SDK_BODY,
            "message": {
                "carousel_message": {
                    "cards": [{"description": "a"}, {"description": "b"}],
                    "choices": [TEXT_CHOICE] * 4,
                }
            },
        },
        {**SDK_BODY, "message": {"carousel_message": {"cards": [{"description": "a"}], "title": "t"}}},
        # SDK `CardMessage`
        {**SDK_BODY, "message": {"card_message": {}}},
        {**SDK_BODY, "message": {"card_message": {"description": "d", "caption": "c"}}},
        {**SDK_BODY, "message": {"card_message": {"media_message": {}}}},
    ],
)
async def test_invalid_send_bodies_get_invalid_argument(fake: FakeSinch, http: httpx.AsyncClient, body: Any) -> None:
    response = await send(http, fake, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT" and error["message"]
    assert fake.sent == []


async def test_auth_project_and_region_are_checked(fake: FakeSinch, http: httpx.AsyncClient) -> None:
    bearer = await token(http, fake)
    path = f"/v1/projects/{fake.project_id}/messages:send"
    no_auth = await http.post(API + path, json=SDK_BODY)
    assert no_auth.status_code == 401 and no_auth.json()["error"]["status"] == "UNAUTHENTICATED"
    unknown = await http.post(API + path, json=SDK_BODY, headers={"authorization": "Bearer made-up"})
    assert unknown.status_code == 401 and "expired" not in unknown.headers["www-authenticate"]
    basic_ok = await http.post(
        API + path, json=SDK_BODY, headers={"authorization": basic(fake.key_id, fake.key_secret)}
    )
    assert basic_ok.status_code == 200
    auth = {"authorization": f"Bearer {bearer}"}
    wrong_project = await http.post(f"{API}/v1/projects/other/messages:send", json=SDK_BODY, headers=auth)
    assert wrong_project.status_code == 404 and wrong_project.json()["error"]["status"] == "NOT_FOUND"
    wrong_region = await http.post("https://eu.conversation.api.sinch.com" + path, json=SDK_BODY, headers=auth)
    assert wrong_region.status_code == 404
    not_json = await http.post(API + path, content=b"{}", headers={**auth, "content-type": "text/plain"})
    assert not_json.status_code == 400


async def test_expired_tokens_say_so(fake: FakeSinch, http: httpx.AsyncClient, clock: FakeClock) -> None:
    bearer = await token(http, fake)
    clock.advance(3601)
    response = await send(http, fake, SDK_BODY, bearer)
    assert response.status_code == 401
    assert "expired" in response.headers["www-authenticate"]
    fresh = await token(http, fake)
    fake.expire_tokens()
    assert "expired" in (await send(http, fake, SDK_BODY, fresh)).headers["www-authenticate"]


async def test_injected_failures(fake: FakeSinch, http: httpx.AsyncClient) -> None:
    bearer = await token(http, fake)
    fake.fail_next(429, retry_after=3)
    limited = await send(http, fake, SDK_BODY, bearer)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    assert limited.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert (await send(http, fake, SDK_BODY, bearer)).status_code == 200


async def test_webhook_crud_and_limits(fake: FakeSinch, http: httpx.AsyncClient) -> None:
    auth = {"authorization": f"Bearer {await token(http, fake)}"}
    base = f"{API}/v1/projects/{fake.project_id}"

    def hook(n: int, **extra: Any) -> dict[str, Any]:
        return {
            "app_id": fake.app_id,
            "target": f"https://bb.example.com/hook/{n}",
            "target_type": "HTTP",
            "triggers": ["MESSAGE_INBOUND", "MESSAGE_DELIVERY"],
            "secret": "s3cret",
            **extra,
        }

    created = await http.post(base + "/webhooks", json=hook(1), headers=auth)
    assert created.status_code == 200
    webhook = created.json()
    assert len(webhook["id"]) == 26 and webhook["target"].endswith("/hook/1") and "secret" not in webhook
    duplicate = await http.post(base + "/webhooks", json=hook(1), headers=auth)
    assert duplicate.status_code == 400 and duplicate.json()["error"]["status"] == "INVALID_ARGUMENT"
    for n in range(2, 6):
        assert (await http.post(base + "/webhooks", json=hook(n), headers=auth)).status_code == 200
    sixth = await http.post(base + "/webhooks", json=hook(6), headers=auth)
    assert sixth.status_code == 400 and "at most 5" in sixth.json()["error"]["message"]
    for bad in (hook(7, triggers=[]), hook(7, triggers=["NOPE"]), hook(7, target="relative"), hook(7, app_id="x")):
        assert (await http.post(base + "/webhooks", json=bad, headers=auth)).status_code == 400
    listed = await http.get(f"{base}/apps/{fake.app_id}/webhooks", headers=auth)
    assert len(listed.json()["webhooks"]) == 5
    assert (await http.get(f"{base}/webhooks/{webhook['id']}", headers=auth)).json()["id"] == webhook["id"]
    assert (await http.delete(f"{base}/webhooks/{webhook['id']}", headers=auth)).status_code == 200
    gone = await http.delete(f"{base}/webhooks/{webhook['id']}", headers=auth)
    assert gone.status_code == 404 and gone.json()["error"]["status"] == "NOT_FOUND"
    assert (await http.post(base + "/webhooks", json=hook(6))).status_code == 401


def _receiver(answers: list[int]) -> tuple[Starlette, list[Request], list[bytes]]:
    seen: list[Request] = []
    bodies: list[bytes] = []

    async def receive(request: Request) -> JSONResponse:
        seen.append(request)
        bodies.append(await request.body())
        return JSONResponse({}, status_code=answers.pop(0) if answers else 200)

    return Starlette(routes=[Route("/hook", receive, methods=["POST"])]), seen, bodies


async def test_callbacks_are_resigned_per_attempt_and_retried(fake: FakeSinch) -> None:
    app, seen, bodies = _receiver([500, 503])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        response = await fake.emit_inbound("http://receiver/hook", text="Hi", contact="+15550001", client=client)
    assert response.status_code == 200
    assert len(seen) == 3 and len(set(bodies)) == 1
    nonces = {r.headers["x-sinch-webhook-signature-nonce"] for r in seen}
    assert len(nonces) == 3
    for request, body in zip(seen, bodies, strict=True):
        expected = sign_callback(
            fake.webhook_secret,
            body,
            request.headers["x-sinch-webhook-signature-nonce"],
            request.headers["x-sinch-webhook-signature-timestamp"],
        )
        assert request.headers["x-sinch-webhook-signature"] == expected
    data = json.loads(bodies[0])
    assert data["message"]["contact_message"] == {"text_message": {"text": "Hi"}}
    assert data["message"]["channel_identity"]["identity"] == "15550001"


async def test_duplicate_and_out_of_order_modes(fake: FakeSinch, http: httpx.AsyncClient) -> None:
    sent = await send(http, fake, SDK_BODY)
    message_id = sent.json()["message_id"]
    fake.duplicate_deliveries = True
    app, _, bodies = _receiver([])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        await fake.emit_lifecycle("http://receiver/hook", message_id, out_of_order=True, client=client)
    statuses = [json.loads(b)["message_delivery_report"]["status"] for b in bodies]
    assert statuses == ["READ", "READ", "DELIVERED", "DELIVERED", "QUEUED_ON_CHANNEL", "QUEUED_ON_CHANNEL"]
    report = json.loads(bodies[0])
    assert report["correlation_id"] == "order-1234"
    assert report["message_delivery_report"]["channel_identity"]["identity"] == "46701234567"


async def test_callbacks_go_to_registered_webhooks_with_their_secret(fake: FakeSinch, http: httpx.AsyncClient) -> None:
    auth = {"authorization": f"Bearer {await token(http, fake)}"}
    hook = {
        "app_id": fake.app_id,
        "target": "http://receiver/hook",
        "triggers": ["MESSAGE_DELIVERY"],
        "secret": "hook-secret",
    }
    await http.post(f"{API}/v1/projects/{fake.project_id}/webhooks", json=hook, headers=auth)
    app, seen, bodies = _receiver([])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        assert await fake.emit_to_webhooks(fake.inbound_body("hi"), "MESSAGE_INBOUND", client=client) == []
        await fake.emit_to_webhooks(fake.report_body("01X", "DELIVERED"), "MESSAGE_DELIVERY", client=client)
    [request] = seen
    headers = request.headers
    assert headers["x-sinch-webhook-signature"] == sign_callback(
        "hook-secret",
        bodies[0],
        headers["x-sinch-webhook-signature-nonce"],
        headers["x-sinch-webhook-signature-timestamp"],
    )


def test_command_line_rejects_unknown_region() -> None:
    with pytest.raises(SystemExit):
        main(["--region", "mars"])


def test_the_sdk_verifies_and_parses_the_fakes_callbacks(fake: FakeSinch) -> None:
    # The official SDK is the oracle for what the fake emits (and the channel parses).
    inbound = fake.inbound_body("hi", "+46701234567", channel="WHATSAPP")
    event = sdk_event(inbound, fake.webhook_secret, fake.sign(inbound))
    assert type(event).__name__ == "MessageInboundEvent"
    report = fake.report_body("01EQBF0BT63J7S1FEKJZ0Z08VD", "FAILED", reason_code="RECIPIENT_NOT_REACHABLE")
    event = sdk_event(report, fake.webhook_secret, fake.sign(report))
    assert type(event).__name__ == "MessageDeliveryReceiptEvent"
