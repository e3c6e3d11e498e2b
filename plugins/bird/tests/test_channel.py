from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botbridge.channel import WebhookRequest
from botbridge.clock import FakeClock
from botbridge.errors import (
    ConfigInvalid,
    CredentialsInvalid,
    InvalidSignature,
    MalformedWebhook,
    ProviderError,
    SendError,
    WebhookRejected,
)
from botbridge.loopback import serve_app
from botbridge.models import Media, Option, OutboundMessage
from botbridge.testing import ChannelContract, ChannelHarness
from botbridge_bird import DEFAULT_REPLAY_WINDOW, BirdChannel, sign_webhook
from botbridge_bird.testing import BirdFake, compact

from .conftest import ACCESS_KEY, API_BASE, FAST, SIGNING_KEY, WEBHOOK_URL, make_sender, signed

pytestmark = pytest.mark.anyio

# Test vector C of the provider reference (vectors/bird_inbound_body.json), byte for byte.
VECTOR_BODY = (
    b'{"service":"channels","event":"sms.inbound","payload":{"id":"96a0b5fa-a986-453d-be5c-3117f989f025",'
    b'"channelId":"614208aa-b153-4d5d-9989-2fddfc0ce4c3","sender":{"contact":{"id":"32cf5eee-f940-422c-ab8c-'
    b'5f753aad5efd","identifierKey":"phonenumber","identifierValue":"+31612345678"}},"receiver":{"connector":'
    b'{"id":"86cc4dc0-3dc0-41b7-ac43-8ec829ead56f"}},"body":{"type":"text","text":{"text":"Sample incoming text'
    b' message"}},"parts":[{"platformReference":"e8077d803532c0b5937c639b60216938"}],"status":"delivered",'
    b'"direction":"incoming","lastStatusAt":"2022-12-22T08:32:50.736Z","createdAt":"2022-12-22T08:32:50.736Z",'
    b'"updatedAt":"2022-12-22T08:32:50.736Z"}}'
)
VECTOR_SIGNATURE = "uhWNvwDhRK+o5oXUe3Xm/u4S7WdFg6YRSBLtQtECM8Q="
VECTOR_URL = "https://domain.com/webhook/bird"
VECTOR_TS = 1719823259
REPORT_STATUS = {"SENT": "sent", "DELIVERED": "delivered", "FAILED": "delivery_failed"}


class TestBirdChannelContract(ChannelContract):
    @pytest.fixture
    def harness(self, fake: BirdFake, channel: BirdChannel, sender: Any, channel_id: str) -> ChannelHarness:
        def report_body(message_id: str, state: str) -> bytes:
            if state == "READ":
                return compact(fake.interaction_event(message_id, "read"))
            return compact(fake.status_event(message_id, REPORT_STATUS[state], reason="unreachable"))

        async def after_send(record: dict[str, Any]) -> None:
            assert record["authorization"] == f"AccessKey {ACCESS_KEY}"
            assert record["receiver"] == {
                "contacts": [{"identifierKey": "phonenumber", "identifierValue": "+15551230002"}]
            }
            assert record["body"] == {"type": "text", "text": {"text": "Your order shipped"}}
            assert record["channel_id"] == channel_id

        return ChannelHarness(
            channel=channel,
            sender=sender,
            sign=lambda body, secret=None, age=0.0: signed(fake, body, key=secret or SIGNING_KEY, age=age),
            inbound_body=lambda text, contact, mid: compact(
                fake.inbound_event(text, contact, message_id=mid, channel_id=channel_id)
            ),
            report_body=report_body,
            sent=lambda: fake.sent,
            stale_age=DEFAULT_REPLAY_WINDOW + 3600,
            report_states=("SENT", "DELIVERED", "READ", "FAILED"),
            after_send=after_send,
        )


# --- signature ------------------------------------------------------------------


def test_reference_vector_signature() -> None:
    assert len(VECTOR_BODY) == 653
    assert sign_webhook("secureSigningKey", str(VECTOR_TS), VECTOR_URL, VECTOR_BODY) == VECTOR_SIGNATURE


def _vector_request(url: str = VECTOR_URL) -> WebhookRequest:
    headers = {"messagebird-signature": VECTOR_SIGNATURE, "messagebird-request-timestamp": str(VECTOR_TS)}
    return WebhookRequest("POST", url, headers, VECTOR_BODY)


async def test_reference_vector_parses_hours_later(fake: BirdFake, api: httpx.AsyncClient) -> None:
    # Bird re-sends failed deliveries with the original timestamp: 3 h later it still counts.
    channel = BirdChannel(api, FakeClock(VECTOR_TS + 3 * 3600))
    sender = make_sender(fake, secret="secureSigningKey", config={"channel_id": "614208aa-b153-4d5d-9989-2fddfc0ce4c3"})
    result = await channel.parse_webhook(_vector_request(), sender)
    [message] = result.messages
    assert message.provider_message_id == "96a0b5fa-a986-453d-be5c-3117f989f025"
    assert message.contact == "+31612345678"
    assert message.text == "Sample incoming text message"
    assert message.to_address == sender.address
    assert message.received_at.isoformat().startswith("2022-12-22T08:32:50.736")
    assert message.metadata["bird_contact_id"] == "32cf5eee-f940-422c-ab8c-5f753aad5efd"

    stale = BirdChannel(api, FakeClock(VECTOR_TS + DEFAULT_REPLAY_WINDOW + 1))
    with pytest.raises(InvalidSignature):
        await stale.parse_webhook(_vector_request(), sender)
    narrow = make_sender(fake, secret="secureSigningKey", config={"replay_window": 3600})
    with pytest.raises(InvalidSignature):
        await channel.parse_webhook(_vector_request(), narrow)


async def test_signed_url_override_for_proxies(fake: BirdFake, api: httpx.AsyncClient) -> None:
    channel = BirdChannel(api, FakeClock(VECTOR_TS))
    internal = _vector_request("http://10.0.0.5:8000/webhook/bird")
    with pytest.raises(InvalidSignature):
        await channel.parse_webhook(internal, make_sender(fake, secret="secureSigningKey"))
    sender = make_sender(
        fake,
        secret="secureSigningKey",
        config={"signed_url": VECTOR_URL, "channel_id": "614208aa-b153-4d5d-9989-2fddfc0ce4c3"},
    )
    assert len((await channel.parse_webhook(internal, sender)).messages) == 1


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda h: h.pop("messagebird-signature"), id="no-signature"),
        pytest.param(lambda h: h.pop("messagebird-request-timestamp"), id="no-timestamp"),
        pytest.param(lambda h: h.update({"messagebird-request-timestamp": "soon"}), id="bad-timestamp"),
        pytest.param(lambda h: h.update({"messagebird-signature": "%%%"}), id="not-base64"),
    ],
)
async def test_missing_or_broken_headers_are_refused(fake: BirdFake, channel: BirdChannel, sender: Any, mutate) -> None:  # type: ignore[no-untyped-def]
    request = signed(fake, fake.inbound_event("hi"))
    headers = dict(request.headers)
    mutate(headers)
    with pytest.raises(InvalidSignature):
        await channel.parse_webhook(WebhookRequest("POST", request.url, headers, request.body), sender)


async def test_future_timestamp_and_altered_url_are_refused(fake: BirdFake, channel: BirdChannel, sender: Any) -> None:
    with pytest.raises(InvalidSignature, match="future"):
        await channel.parse_webhook(signed(fake, fake.inbound_event("hi"), age=-600), sender)
    for url in (WEBHOOK_URL + "?x=1", WEBHOOK_URL.replace(".com", ".com:8443")):
        request = signed(fake, fake.inbound_event("hi"), url=url)
        moved = WebhookRequest("POST", WEBHOOK_URL, request.headers, request.body)
        with pytest.raises(InvalidSignature):
            await channel.parse_webhook(moved, sender)


async def test_sender_without_signing_key_refuses_everything(fake: BirdFake, channel: BirdChannel) -> None:
    sender = make_sender(fake, secret="")
    with pytest.raises(InvalidSignature):
        await channel.parse_webhook(signed(fake, fake.inbound_event("hi"), key=""), sender)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(min_size=1, max_size=200), position=st.integers(min_value=0), flip=st.integers(1, 255))
async def test_any_flipped_byte_is_refused(
    fake: BirdFake, channel: BirdChannel, sender: Any, body: bytes, position: int, flip: int
) -> None:
    request = signed(fake, body)
    index = position % len(body)
    tampered = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    with pytest.raises(InvalidSignature):
        await channel.parse_webhook(WebhookRequest("POST", request.url, request.headers, tampered), sender)


# --- parsing ---------------------------------------------------------------------


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.text(max_size=300),
    digits=st.from_regex(r"[1-9][0-9]{7,13}", fullmatch=True),
    plus=st.booleans(),
    message_id=st.text(min_size=1, max_size=60),
)
async def test_inbound_round_trip(
    fake: BirdFake, channel: BirdChannel, sender: Any, text: str, digits: str, plus: bool, message_id: str
) -> None:
    event = fake.inbound_event(text, ("+" if plus else "") + digits, message_id=message_id)
    [message] = (await channel.parse_webhook(signed(fake, event), sender)).messages
    assert (message.text, message.contact, message.provider_message_id) == (text, "+" + digits, message_id)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.lists(
        st.sampled_from(["payload", "body", "text", "sender", "contact", "image", "images", "0"]), max_size=4
    ),
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8,
    ),
    event=st.sampled_from(["sms.inbound", "sms.outbound", "whatsapp.interaction", "channel.updated", "x.y"]),
)
async def test_signed_event_variants_only_get_rejections(
    fake: BirdFake, channel: BirdChannel, sender: Any, path: list[str], value: Any, event: str
) -> None:
    data: Any = fake.inbound_event("hello")
    data["event"] = event
    node = data
    for key in path[:-1]:
        child = node.get(key) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            break
        node = child
    if isinstance(node, dict) and path:
        node[path[-1]] = value
    try:
        await channel.parse_webhook(signed(fake, data), sender)
    except WebhookRejected as exc:
        assert isinstance(exc, MalformedWebhook)


async def test_inbound_media_location_and_postback(fake: BirdFake, channel: BirdChannel, sender: Any) -> None:
    bodies = [
        {"type": "image", "image": {"images": [{"mediaUrl": "https://m.example/a.jpg", "altText": "cat"}]}},
        {
            "type": "file",
            "file": {"files": [{"mediaUrl": "https://m.example/a.pdf", "contentType": "application/pdf"}]},
        },
        {
            "type": "location",
            "location": {"coordinates": {"latitude": 52.37, "longitude": 4.89}, "location": {"label": "Dam"}},
        },
        {
            "type": "text",
            "text": {"text": "Sales", "actions": [{"type": "postback", "postback": {"text": "Sales", "payload": "s"}}]},
        },
        {"type": "carousel", "carousel": {}},
    ]
    results = [
        (await channel.parse_webhook(signed(fake, fake.inbound_event(body=b)), sender)).messages[0] for b in bodies
    ]
    image, file, location, postback, other = results
    assert [(m.url, m.caption) for m in image.media] == [("https://m.example/a.jpg", "cat")]
    assert file.media[0].content_type == "application/pdf"
    assert location.text == "Location: 52.37,4.89 (Dam)"
    assert (postback.text, postback.postback) == ("Sales", "s")
    assert (other.text, other.metadata["body_type"]) == ("", "carousel")


async def test_inbound_on_platform_channels_uses_the_contact_id(fake: BirdFake, channel: BirdChannel) -> None:
    channel_id = fake.add_channel("instagram", "ourbrand")
    sender = make_sender(fake, config={"channel_type": "instagram", "channel_id": channel_id})
    event = fake.inbound_event("hey", "someone.insta", channel_id=channel_id, identifier_key="instagram.username")
    [message] = (await channel.parse_webhook(signed(fake, event), sender)).messages
    assert message.contact == event["payload"]["sender"]["contact"]["id"]
    assert message.to_address == "ourbrand"


async def test_events_of_other_channels_and_unknown_events_are_ignored(
    fake: BirdFake, channel: BirdChannel, sender: Any
) -> None:
    other = fake.inbound_event("hi", channel_id="00000000-0000-4000-8000-000000000000")
    assert (await channel.parse_webhook(signed(fake, other), sender)).messages == []
    for name in ("sms.something_new", "conversation.created", "weird"):
        event = {**fake.inbound_event("hi"), "event": name}
        result = await channel.parse_webhook(signed(fake, event), sender)
        assert result.messages == [] and result.reports == [] and result.sender_state is None
    with pytest.raises(MalformedWebhook):
        await channel.parse_webhook(signed(fake, {"service": "channels", "event": "sms.inbound"}), sender)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("accepted", "QUEUED"),
        ("processing", "QUEUED"),
        ("sent", "SENT"),
        ("delivered", "DELIVERED"),
        ("sending_failed", "FAILED"),
        ("delivery_failed", "FAILED"),
        ("brand_new_status", None),
    ],
)
async def test_outbound_statuses(fake: BirdFake, channel: BirdChannel, sender: Any, status: str, state: Any) -> None:
    result = await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+15551230009", text="x"))
    event = fake.status_event(result.provider_message_id, status, reason="carrier said no")
    reports = (await channel.parse_webhook(signed(fake, event), sender)).reports
    if state is None:
        assert reports == []
        return
    [report] = reports
    assert (report.state, report.provider_message_id, report.contact) == (
        state,
        result.provider_message_id,
        "+15551230009",
    )
    if state == "FAILED":
        # failure{code, description, source} is the reason, not the bare status
        assert (report.reason_code, report.reason_description) == ("15", "carrier said no (platform)")
    else:
        assert report.reason_code is None


async def test_failure_object_is_the_reason(fake: BirdFake, channel: BirdChannel, sender: Any) -> None:
    result = await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+15551230009", text="x"))
    failure = {"code": 131026, "description": "Message undeliverable", "source": "whatsapp"}
    event = fake.status_event(result.provider_message_id, "delivery_failed", failure=failure)
    [report] = (await channel.parse_webhook(signed(fake, event), sender)).reports
    assert (report.reason_code, report.reason_description) == ("131026", "Message undeliverable (whatsapp)")
    bare = fake.status_event(result.provider_message_id, "sending_failed", reason="no route", failure={})
    [report] = (await channel.parse_webhook(signed(fake, bare), sender)).reports
    assert (report.reason_code, report.reason_description) == ("sending_failed", "no route")


async def test_interactions(fake: BirdFake, channel: BirdChannel, sender: Any) -> None:
    read = await channel.parse_webhook(signed(fake, fake.interaction_event("m-1", "read")), sender)
    assert [(r.state, r.provider_message_id) for r in read.reports] == [("READ", "m-1")]
    clicked = await channel.parse_webhook(signed(fake, fake.interaction_event("m-1", "clicked")), sender)
    assert clicked.reports == []


async def test_channel_events_change_the_sender_state(fake: BirdFake, channel: BirdChannel) -> None:
    sender = make_sender(fake, config={"channel_id": None, "connector_id": "c-1"}, state="pending")
    sender.sender.config.pop("channel_id")
    new_channel = "11111111-1111-4111-8111-111111111111"

    def event(name: str, **payload: Any) -> dict[str, Any]:
        return {"service": "channels", "event": name, "payload": payload}

    other = await channel.parse_webhook(
        signed(fake, event("channel.created", connectorId="c-2", status="active")), sender
    )
    assert other.sender_state is None
    pending = await channel.parse_webhook(
        signed(fake, event("channel.updated", connectorId="c-1", status="pending")), sender
    )
    assert pending.sender_state is None
    failed = await channel.parse_webhook(
        signed(fake, event("channel.updated", connectorId="c-1", status="failed", reason="number revoked")), sender
    )
    assert (failed.sender_state, failed.sender_state_reason) == ("failed", "number revoked")
    active = await channel.parse_webhook(
        signed(fake, event("channel.created", connectorId="c-1", channelId=new_channel, status="active")), sender
    )
    assert active.sender_state == "active"
    # the learned channel id now filters inbound events
    foreign = fake.inbound_event("hi", channel_id="00000000-0000-4000-8000-000000000000")
    assert (await channel.parse_webhook(signed(fake, foreign), sender)).messages == []


# --- sending ---------------------------------------------------------------------


async def test_send_text_reference_and_fragments(fake: BirdFake, channel: BirdChannel, sender: Any) -> None:
    message = OutboundMessage(sender_id=sender.id, contact="1 555 123 0004", text="é" * 100)
    result = await channel.send(sender, message)
    record = fake.sent[-1]
    assert record["to"] == "+15551230004"
    assert record["reference"] == message.id
    assert result.provider_message_id == record["id"]
    assert (result.state, result.fragments_count) == ("QUEUED", 1)
    long = await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+15551230004", text="ж" * 200))
    assert long.fragments_count == 3


async def test_options_and_media_on_sms_become_text(fake: BirdFake, channel: BirdChannel, sender: Any) -> None:
    message = OutboundMessage(
        sender_id=sender.id,
        contact="+15551230005",
        text="Pick one",
        options=[Option(label="Billing", value="billing"), Option(label="Sales", value="sales")],
        media=[Media(url="https://m.example/menu.png")],
    )
    await channel.send(sender, message)
    body = fake.sent[-1]["body"]
    assert body["type"] == "text"
    assert body["text"]["text"] == "Pick one\n1. Billing\n2. Sales\nReply with a number.\nhttps://m.example/menu.png"
    assert "actions" not in body["text"]


async def test_whatsapp_buttons_media_and_limits(fake: BirdFake, channel: BirdChannel) -> None:
    channel_id = fake.add_channel("whatsapp", "+3197010250009")
    sender = make_sender(fake, config={"channel_type": "whatsapp", "channel_id": channel_id})
    options = [Option(label="Yes", value="y"), Option(label="No", value="n")]
    await channel.send(
        sender, OutboundMessage(sender_id=sender.id, contact="+15551230006", text="Ok?", options=options)
    )
    assert fake.sent[-1]["body"]["text"] == {
        "text": "Ok?",
        "actions": [
            {"type": "postback", "postback": {"text": "Yes", "payload": "y"}},
            {"type": "postback", "postback": {"text": "No", "payload": "n"}},
        ],
    }
    many = [Option(label=f"Choice {i}", value=str(i)) for i in range(4)]
    await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+15551230006", text="Pick", options=many))
    assert "actions" not in fake.sent[-1]["body"]["text"]
    assert "4. Choice 3" in fake.sent[-1]["text"]

    await channel.send(
        sender,
        OutboundMessage(
            sender_id=sender.id, contact="+15551230006", text="Look", media=[Media(url="https://m.example/a.jpg")]
        ),
    )
    assert fake.sent[-1]["body"] == {
        "type": "image",
        "image": {"images": [{"mediaUrl": "https://m.example/a.jpg"}], "text": "Look"},
    }
    pdf = Media(url="https://m.example/doc.pdf", content_type="application/pdf")
    await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+15551230006", media=[pdf]))
    assert fake.sent[-1]["body"]["file"]["files"] == [
        {"mediaUrl": "https://m.example/doc.pdf", "contentType": "application/pdf", "filename": "doc.pdf"}
    ]
    await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+15551230006", text="x" * 5000))
    assert len(fake.sent[-1]["text"]) == 4096 and fake.sent[-1]["text"].endswith("…")


async def test_files_always_carry_a_content_type(fake: BirdFake, channel: BirdChannel) -> None:
    channel_id = fake.add_channel("whatsapp", "+3197010250009")
    sender = make_sender(fake, config={"channel_type": "whatsapp", "channel_id": channel_id})

    async def files_of(media: Media) -> list[dict[str, Any]]:
        await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+15551230006", media=[media]))
        return fake.sent[-1]["body"]["file"]["files"]  # type: ignore[no-any-return]

    # a known extension
    [item] = await files_of(Media(url="https://m.example/report.pdf"))
    assert item["contentType"] == "application/pdf"
    # no extension: a HEAD request through the shared client names it
    fake.hosted_media["/download/8812"] = "application/vnd.ms-excel; charset=binary"
    heads_before = len([r for r in fake.requests if r["method"] == "HEAD"])
    [item] = await files_of(Media(url="https://m.example/download/8812"))
    assert item["contentType"] == "application/vnd.ms-excel"
    heads = [r for r in fake.requests if r["method"] == "HEAD"]
    assert len(heads) == heads_before + 1 and heads[-1]["authorization"] is None  # no Bird key to a media host
    # a HEAD that says image/* makes it an image body
    fake.hosted_media["/photo"] = "image/jpeg"
    await channel.send(
        sender,
        OutboundMessage(sender_id=sender.id, contact="+15551230006", media=[Media(url="https://m.example/photo")]),
    )
    assert fake.sent[-1]["body"]["type"] == "image"
    # nothing names it: the send fails for good, nothing goes out without contentType
    sent = len(fake.sent)
    with pytest.raises(SendError) as caught:
        await files_of(Media(url="https://m.example/unknown"))
    assert not caught.value.retryable and "content_type" in str(caught.value)
    assert len(fake.sent) == sent


async def test_buttons_survive_media_and_never_hang_on_a_blank_body(fake: BirdFake, channel: BirdChannel) -> None:
    channel_id = fake.add_channel("whatsapp", "+3197010250009")
    sender = make_sender(fake, config={"channel_type": "whatsapp", "channel_id": channel_id})
    options = [Option(label="Yes", value="y"), Option(label="No", value="n")]
    actions = [
        {"type": "postback", "postback": {"text": "Yes", "payload": "y"}},
        {"type": "postback", "postback": {"text": "No", "payload": "n"}},
    ]
    with_media = OutboundMessage(
        sender_id=sender.id,
        contact="+15551230006",
        text="This one?",
        options=options,
        media=[Media(url="https://m.example/a.jpg")],
    )
    await channel.send(sender, with_media)
    assert fake.sent[-1]["body"] == {
        "type": "image",
        "image": {"images": [{"mediaUrl": "https://m.example/a.jpg"}], "text": "This one?", "actions": actions},
    }
    # options without text: numbered text, not buttons under " "
    await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+15551230006", options=options))
    body = fake.sent[-1]["body"]["text"]
    assert "actions" not in body and body["text"].startswith("1. Yes\n2. No")


async def test_recipients_per_channel_type(fake: BirdFake, channel: BirdChannel) -> None:
    insta = fake.add_channel("instagram", "brand")
    email = fake.add_channel("email", "bot@example.com")
    contact_id = "22222222-2222-4222-8222-222222222222"
    s1 = make_sender(fake, config={"channel_type": "instagram", "channel_id": insta})
    await channel.send(s1, OutboundMessage(sender_id=s1.id, contact=contact_id, text="hi"))
    assert fake.sent[-1]["receiver"] == {"contacts": [{"id": contact_id}]}
    s2 = make_sender(fake, config={"channel_type": "email", "channel_id": email})
    await channel.send(s2, OutboundMessage(sender_id=s2.id, contact="a@example.com", text="hi"))
    assert fake.sent[-1]["receiver"] == {
        "contacts": [{"identifierKey": "emailaddress", "identifierValue": "a@example.com"}]
    }


async def test_json_credentials_are_accepted(fake: BirdFake, channel: BirdChannel) -> None:
    sender = make_sender(fake, credentials=json.dumps({"access_key": ACCESS_KEY}))
    await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+15551230007", text="hi"))
    assert fake.requests[-1]["authorization"] == f"AccessKey {ACCESS_KEY}"


async def test_send_errors_are_mapped(fake: BirdFake, channel: BirdChannel, sender: Any) -> None:
    message = OutboundMessage(sender_id=sender.id, contact="+15551230008", text="hi")
    with pytest.raises(CredentialsInvalid) as caught:
        await channel.send(make_sender(fake, credentials="wrong-key-123"), message)
    assert "wrong-key-123" not in str(caught.value)

    fake.fail_next(429, retry_after=0)
    before = len(fake.requests)
    assert (await channel.send(sender, message)).provider_message_id
    assert len(fake.requests) - before == 2

    # A 5xx may come after Bird accepted the message: never re-posted blindly.
    fake.fail_next(503, times=3)
    before = len(fake.requests)
    with pytest.raises(SendError) as caught:
        await channel.send(sender, message)
    assert caught.value.retryable and caught.value.status_code == 503 and caught.value.outcome_unknown
    assert len(fake.requests) - before == 1
    fake._failures.clear()

    before = len(fake.requests)
    with pytest.raises(SendError) as caught:
        await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="not-a-number", text="hi"))
    assert not caught.value.retryable and caught.value.status_code == 422
    assert len(fake.requests) - before == 1

    gone = make_sender(fake, config={"channel_id": "33333333-3333-4333-8333-333333333333"})
    with pytest.raises(SendError) as caught:
        await channel.send(gone, message)
    assert (caught.value.status_code, caught.value.retryable) == (404, False)


async def test_find_sent_looks_the_message_up_by_reference(fake: BirdFake, channel: BirdChannel, sender: Any) -> None:
    assert channel.finds_sent
    message = OutboundMessage(sender_id=sender.id, contact="+15551230008", text="hi")
    fake.lost_answers = 1  # Bird accepts it, the answer is lost
    with pytest.raises(SendError) as caught:
        await channel.send(sender, message)
    assert caught.value.outcome_unknown
    found = await channel.find_sent(sender, message)
    assert found is not None and found.provider_message_id == fake.sent[-1]["id"] and found.state == "QUEUED"
    assert len(fake.sent) == 1
    other = OutboundMessage(sender_id=sender.id, contact="+15551230008", text="hi")
    assert await channel.find_sent(sender, other) is None
    lookup = [r for r in fake.requests if r["method"] == "GET"][-1]
    assert lookup["path"].endswith("/messages")


# --- sender configuration ----------------------------------------------------------


WS = "44444444-4444-4444-8444-444444444444"
CH = "55555555-5555-4555-8555-555555555555"
ORG = "66666666-6666-4666-8666-666666666666"
PROVISION = {"workspace_id": WS, "organization_id": ORG, "provision": True}


@pytest.mark.parametrize(
    ("credentials", "secret", "config", "field"),
    [
        ("", "s", {"workspace_id": WS, "channel_id": CH}, "credentials"),
        ('{"other": 1}', "s", {"workspace_id": WS, "channel_id": CH}, "credentials.access_key"),
        ("k", "", {"workspace_id": WS, "channel_id": CH}, "webhook_secret"),
        ("k", "s", {"channel_id": CH}, "config.workspace_id"),
        ("k", "s", {"workspace_id": "ws-1", "channel_id": CH}, "config.workspace_id"),
        ("k", "s", {"workspace_id": WS}, "config.channel_id"),
        ("k", "s", {"workspace_id": WS, "channel_id": CH, "channel_type": "fax"}, "config.channel_type"),
        ("k", "s", {"workspace_id": WS, "channel_id": CH, "base_url": "api.bird.com"}, "config.base_url"),
        ("k", "s", {"workspace_id": WS, "channel_id": CH, "replay_window": 0}, "config.replay_window"),
        ("k", "", {**PROVISION, "channel_message_type": "t"}, "config.phone_number_id"),
        ("k", "", {**PROVISION, "phone_number_id": CH}, "config.channel_message_type"),
        # subscriptions live under /organizations/{organizationId}/workspaces/{workspaceId}
        ("k", "", {"workspace_id": WS, "channel_id": CH, "provision": True}, "config.organization_id"),
        ("k", "", {**PROVISION, "channel_id": CH, "organization_id": "org-1"}, "config.organization_id"),
    ],
)
async def test_validate_sender_names_the_field(
    channel: BirdChannel, credentials: str, secret: str, config: dict, field: str
) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigInvalid) as caught:
        channel.validate_sender("+3197010250000", credentials, secret, config)
    assert caught.value.field == field


async def test_validate_sender_fills_defaults(channel: BirdChannel) -> None:
    config = channel.validate_sender("+31", '{"access_key": "k"}', "s", {"workspace_id": WS, "channel_id": CH})
    assert config == {"workspace_id": WS, "channel_id": CH, "channel_type": "sms"}
    provision = {**PROVISION, "connector_template": "whatsapp:1", "channel_type": "whatsapp"}
    assert channel.validate_sender("+31", "k", "", provision)["channel_type"] == "whatsapp"
    assert channel.capabilities(make_sender(BirdFake(), config={"channel_type": "whatsapp"})).options is True


# --- provisioning ------------------------------------------------------------------


async def test_provision_filters_by_the_channel_the_install_answer_names(fake: BirdFake, channel: BirdChannel) -> None:
    # Bird's install answer names the channel while it installs: every
    # subscription is filtered by it from the start, none is workspace-wide.
    fake.channels.clear()
    number_id = fake.add_phone_number("+3197010250078")
    config = {"provision": True, "phone_number_id": number_id, "channel_message_type": "transactional"}
    sender = make_sender(fake, config=config, secret="", state="pending")
    result = await channel.provision(sender)
    assert result is not None and result.state == "pending" and result.webhook_secret
    [connector] = fake.connectors.values()
    installing = connector["channel"]["channelId"]
    assert result.config["install_channel_id"] == installing and "channel_id" not in result.config
    filters = [{"key": "channelId", "value": installing}]
    assert sorted((s["event"], s["eventFilters"] == filters) for s in fake.subscriptions.values()) == [
        ("channel.updated", True),
        ("sms.inbound", True),
        ("sms.outbound", True),
    ]
    assert sorted(result.config["webhook_subscription_ids"]) == sorted(fake.subscriptions)
    assert "pending_events" not in result.config and "install_subscription_ids" not in result.config

    sender.sender.config.update(result.config)
    sender.webhook_secret = result.webhook_secret
    with pytest.raises(SendError) as caught:  # the channel exists but is not active: the message waits
        await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+15551230010", text="early"))
    assert caught.value.retryable and fake.sent == []
    # Bird's news names the channel, not always the connector: either is recognised.
    news = {"service": "channels", "event": "channel.updated", "payload": {"channelId": installing, "status": "active"}}
    active = await channel.parse_webhook(signed(fake, news, key=result.webhook_secret), sender)
    assert (active.sender_state, active.sender_config) == ("active", {"channel_id": installing})
    assert len(fake.subscriptions) == 3  # nothing left to narrow or create
    await fake.complete_install(connector["id"], emit=False)
    sender.sender.config.update(active.sender_config)
    sender.sender.state = "active"
    await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+15551230010", text="now"))
    assert fake.sent[-1]["channel_id"] == installing
    await channel.deprovision(sender)
    assert fake.subscriptions == {} and fake.connectors == {} and fake.channels == {}


async def test_provision_without_a_channel_in_the_install_answer(fake: BirdFake, channel: BirdChannel) -> None:
    fake.channels.clear()
    fake.channel_on_install = False
    number_id = fake.add_phone_number("+3197010250077")
    config = {"provision": True, "phone_number_id": number_id, "channel_message_type": "transactional"}
    sender = make_sender(fake, config=config, secret="", state="pending")
    result = await channel.provision(sender)
    assert result is not None and result.state == "pending" and result.webhook_secret
    [connector] = fake.connectors.values()
    assert connector["arguments"] == {"phoneNumberId": number_id, "channelMessageType": "transactional"}
    assert result.config["connector_id"] == connector["id"]
    # No channel id yet: only channel.updated is watched; no unfiltered platform subscription.
    [(event, filters)] = [(s["event"], s["eventFilters"]) for s in fake.subscriptions.values()]
    assert (event, filters) == ("channel.updated", [])
    assert {s["url"] for s in fake.subscriptions.values()} == {WEBHOOK_URL}
    assert {s["signingKey"] for s in fake.subscriptions.values()} == {result.webhook_secret}
    assert all(r["path"].startswith(f"/organizations/{fake.organization_id}/") for r in subscription_calls(fake))

    sender.sender.config.update(result.config)
    sender.webhook_secret = result.webhook_secret  # as the host stores it
    assert (await channel.poll_provisioning(sender)).state == "pending"
    with pytest.raises(SendError) as caught:
        await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+15551230010", text="early"))
    assert caught.value.retryable
    await fake.complete_install(connector["id"], emit=False)
    polled = await channel.poll_provisioning(sender)
    assert polled.state == "active" and polled.config["channel_id"] == connector["channel"]["channelId"]
    # Now every subscription is filtered by the channel: the install one updated, the others created so.
    narrowed = [{"key": "channelId", "value": polled.config["channel_id"]}]
    events = sorted((s["event"], s["eventFilters"] == narrowed) for s in fake.subscriptions.values())
    assert events == [("channel.updated", True), ("sms.inbound", True), ("sms.outbound", True)]
    assert sorted(polled.config["webhook_subscription_ids"]) == sorted(fake.subscriptions)
    sender.sender.config.update(polled.config)
    assert await channel.poll_provisioning(sender) == polled.model_copy(
        update={"config": {"channel_id": polled.config["channel_id"]}}
    )  # nothing more to narrow
    await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+15551230010", text="now"))
    assert fake.sent[-1]["channel_id"] == polled.config["channel_id"]

    await channel.deprovision(sender)
    assert fake.subscriptions == {} and fake.connectors == {} and fake.channels == {}
    await channel.deprovision(sender)  # already gone: 404s are fine


async def test_provision_existing_channel_and_rollback(fake: BirdFake, channel: BirdChannel, channel_id: str) -> None:
    org_sender = make_sender(fake, config={"provision": True, "organization_id": fake.organization_id})
    result = await channel.provision(org_sender)
    assert result is not None and result.state == "active" and "connector_id" not in result.config
    assert all(s["eventFilters"] == [{"key": "channelId", "value": channel_id}] for s in fake.subscriptions.values())
    assert len(result.config["webhook_subscription_ids"]) == 2
    assert fake.connectors == {}
    fake.subscriptions.clear()

    # the second subscription fails for good: the first one is removed again
    fake.fail_next(422, method="POST", path="webhook-subscriptions", after=1)
    with pytest.raises(ProviderError) as caught:
        await channel.provision(make_sender(fake, config={"provision": True}))
    assert caught.value.status_code == 422
    assert fake.subscriptions == {}

    # an installed connector is uninstalled when a subscription fails
    fake.channels.clear()
    number_id = fake.add_phone_number()
    config = {"provision": True, "phone_number_id": number_id, "channel_message_type": "promotional"}
    fake.fail_next(403, method="POST", path="webhook-subscriptions")
    with pytest.raises(CredentialsInvalid):
        await channel.provision(make_sender(fake, config=config))
    assert fake.connectors == {} and fake.subscriptions == {}


@pytest.mark.parametrize(
    "url",
    [
        "/v1/webhooks/bird/x",
        "http://bridge.example.com/v1/webhooks/bird/x",
        "https://bridge.example.com:8443/v1/webhooks/bird/x",
        "https://10.0.0.7/v1/webhooks/bird/x",
        "https://localhost/v1/webhooks/bird/x",
    ],
)
async def test_provision_needs_an_https_hostname_url(fake: BirdFake, channel: BirdChannel, url: str) -> None:
    # docs.bird.com "Create a webhook subscription": https, a hostname, no port.
    sender = make_sender(fake, config={"provision": True}, webhook_url=url)
    with pytest.raises(ConfigInvalid) as caught:
        await channel.provision(sender)
    assert caught.value.field == "BOTBRIDGE_PUBLIC_URL" and url in str(caught.value)
    assert fake.requests == []


async def test_a_configured_signed_url_is_what_must_be_https(fake: BirdFake, channel: BirdChannel) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        await channel.provision(make_sender(fake, config={"provision": True, "signed_url": "http://x.example/a"}))
    assert caught.value.field == "config.signed_url"


def subscription_calls(fake: BirdFake) -> list[dict[str, Any]]:
    return [r for r in fake.requests if "webhook-subscriptions" in r["path"]]


# --- over real loopback HTTP ----------------------------------------------------


@pytest.fixture
def loopback(fake: BirdFake) -> Iterator[str]:
    with serve_app(fake.app) as url:
        yield url


async def test_send_over_loopback(fake: BirdFake, clock: FakeClock, loopback: str) -> None:
    async with httpx.AsyncClient() as http:
        channel = BirdChannel(http, clock)
        channel.retry_policy = FAST
        sender = make_sender(fake, config={"base_url": loopback})
        result = await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+15551230011", text="real"))
    record = fake.sent[-1]
    assert record["authorization"] == f"AccessKey {ACCESS_KEY}"
    assert record["id"] == result.provider_message_id
    assert record["body"] == {"type": "text", "text": {"text": "real"}}
    assert fake.requests[-1]["content_type"] == "application/json"
    assert API_BASE not in loopback
