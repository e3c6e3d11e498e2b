"""The Sinch channel against the strict fake."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botbridge.channel import SenderContext, WebhookRequest
from botbridge.clock import FakeClock
from botbridge.errors import ConfigInvalid, CredentialsInvalid, InvalidSignature, MalformedWebhook, SendError
from botbridge.loopback import serve_app
from botbridge.models import Media, Option, OutboundMessage
from botbridge.testing import ChannelContract, ChannelHarness
from botbridge_sinch import SinchChannel
from botbridge_sinch.testing import FakeSinch

from .conftest import FAST_RETRY, Claims, credentials_json, make_sender, signed

pytestmark = pytest.mark.anyio

VECTOR = (Path(__file__).parent / "vectors" / "sinch_inbound_body.json").read_bytes()
SINCH_STATUS = {"QUEUED": "QUEUED_ON_CHANNEL", "DELIVERED": "DELIVERED", "READ": "READ", "FAILED": "FAILED"}


class TestSinchChannelContract(ChannelContract):
    @pytest.fixture
    def harness(self, channel: SinchChannel, sender: SenderContext, fake: FakeSinch) -> ChannelHarness:
        async def after_send(record: dict[str, Any]) -> None:
            assert record["auth"] == "bearer"
            assert record["body"]["app_id"] == fake.app_id
            assert record["channel"] == "SMS"
            assert record["to"] == "15551230002"

        return ChannelHarness(
            channel=channel,
            sender=sender,
            sign=lambda body, secret=None, age=0.0: signed(fake, sender, body, secret, age),
            inbound_body=lambda text, contact, mid: fake.inbound_body(text, contact, mid),
            report_body=lambda pid, state: fake.report_body(pid, SINCH_STATUS[state]),
            sent=lambda: fake.sent,
            signs_timestamp=True,
            stale_age=3600.0,
            report_states=("QUEUED", "DELIVERED", "READ", "FAILED"),
            after_send=after_send,
        )


# --- inbound ---------------------------------------------------------------


async def test_reference_vector_b_verifies_and_parses(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake)
    sender.webhook_secret = "my-webhook-secret"
    channel.clock = FakeClock(1714644930 + 10)
    headers = {
        "x-sinch-webhook-signature": "8xVxg/z4I0Y1cI1ZOlGPsmeutsiXO5T/K+Ae/xDxcBU=",
        "x-sinch-webhook-signature-nonce": "01HWXYZNONCE00000000000000",
        "x-sinch-webhook-signature-timestamp": "1714644930",
        "x-sinch-webhook-signature-algorithm": "HmacSHA256",
    }
    result = await channel.parse_webhook(WebhookRequest("POST", sender.webhook_url, headers, VECTOR), sender)
    [message] = result.messages
    assert message.text == "Hello from WhatsApp"
    assert message.provider_message_id == "01HWXYZMSG0000000000000000"
    assert message.contact == "+46701234567"
    assert message.to_address == "+46709876543"
    assert message.metadata["sinch_channel"] == "WHATSAPP"
    assert message.metadata["conversation_id"] == "01HWXYZCONV000000000000000"
    # Re-serialised with other whitespace, the same JSON no longer verifies.
    reformatted = json.dumps(json.loads(VECTOR)).encode()
    with pytest.raises(InvalidSignature):
        await channel.parse_webhook(
            WebhookRequest("POST", sender.webhook_url, {**headers, "x-sinch-webhook-signature-nonce": "other"}, VECTOR),
            sender,
        )
    with pytest.raises(InvalidSignature):
        await channel.parse_webhook(WebhookRequest("POST", sender.webhook_url, headers, reformatted), sender)


async def test_replayed_nonce_is_refused(channel: SinchChannel, sender: SenderContext, fake: FakeSinch) -> None:
    request = signed(fake, sender, fake.inbound_body("hi", "+15550001111", "mo-r"))
    assert len((await channel.parse_webhook(request, sender)).messages) == 1
    with pytest.raises(InvalidSignature, match="already used"):
        await channel.parse_webhook(request, sender)


async def test_nonce_is_claimed_for_twice_the_window(fake: FakeSinch, channel: SinchChannel) -> None:
    claims = Claims()
    sender = make_sender(fake, claims, signature_window=120)
    request = signed(fake, sender, fake.inbound_body("hi", "+15550001111", "mo-w"), nonce="N0NCE")
    await channel.parse_webhook(request, sender)
    assert claims.keys == {"sinch-nonce:N0NCE": 240}


async def test_forged_request_does_not_burn_the_nonce(channel: SinchChannel, fake: FakeSinch) -> None:
    claims = Claims()
    sender = make_sender(fake, claims)
    body = fake.inbound_body("hi", "+15550001111", "mo-f")
    with pytest.raises(InvalidSignature):
        await channel.parse_webhook(signed(fake, sender, body, secret="wrong-secret", nonce="N1"), sender)
    assert claims.keys == {}
    assert (await channel.parse_webhook(signed(fake, sender, body, nonce="N1"), sender)).messages


@pytest.mark.parametrize(
    "header",
    ["x-sinch-webhook-signature", "x-sinch-webhook-signature-nonce", "x-sinch-webhook-signature-timestamp"],
)
async def test_missing_signature_header_is_refused(
    channel: SinchChannel, sender: SenderContext, fake: FakeSinch, header: str
) -> None:
    request = signed(fake, sender, fake.inbound_body("hi", "+15550001111", "mo-h"))
    headers = {k: v for k, v in request.headers.items() if k != header}
    with pytest.raises(InvalidSignature, match="missing"):
        await channel.parse_webhook(WebhookRequest("POST", request.url, headers, request.body), sender)


async def test_other_algorithm_is_refused(channel: SinchChannel, sender: SenderContext, fake: FakeSinch) -> None:
    request = signed(fake, sender, fake.inbound_body("hi", "+15550001111", "mo-a"), algorithm="HmacSHA512")
    with pytest.raises(InvalidSignature, match="algorithm"):
        await channel.parse_webhook(request, sender)


async def test_timestamp_window_edges_and_config(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake)
    body = fake.inbound_body("hi", "+15550001111", "mo-t1")
    assert (await channel.parse_webhook(signed(fake, sender, body, age=299), sender)).messages
    with pytest.raises(InvalidSignature, match="window"):
        await channel.parse_webhook(signed(fake, sender, body, age=301), sender)
    with pytest.raises(InvalidSignature, match="window"):
        await channel.parse_webhook(signed(fake, sender, body, age=-301), sender)
    wide = make_sender(fake, signature_window=3600)
    assert (await channel.parse_webhook(signed(fake, wide, body, age=1800), wide)).messages


async def test_sender_without_secret_refuses_everything(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake)
    sender.webhook_secret = ""
    with pytest.raises(InvalidSignature):
        await channel.parse_webhook(signed(fake, sender, fake.inbound_body("x", "+1555", "m"), secret=""), sender)


@pytest.mark.parametrize(
    ("content", "text", "postback", "media"),
    [
        ({"text_message": {"text": "plain"}}, "plain", None, []),
        ({"choice_response_message": {"message_id": "01X", "postback_data": "billing"}}, "billing", "billing", []),
        ({"media_message": {"url": "https://cdn.example/a.jpg"}}, "", None, [("https://cdn.example/a.jpg", None)]),
        (
            {"media_card_message": {"url": "https://cdn.example/b.png", "caption": "look"}},
            "look",
            None,
            [("https://cdn.example/b.png", "look")],
        ),
        (
            {"location_message": {"title": "Office", "coordinates": {"latitude": 59.33, "longitude": 18.06}}},
            "Location: 59.33,18.06 (Office)",
            None,
            [],
        ),
        (
            {"location_message": {"coordinates": {"latitude": -1.5, "longitude": 2}}},
            "Location: -1.5,2.0",
            None,
            [],
        ),
        ({"fallback_message": {"raw_message": "{raw}", "reason": {"code": "UNKNOWN"}}}, "{raw}", None, []),
    ],
)
async def test_inbound_content_kinds(
    channel: SinchChannel,
    sender: SenderContext,
    fake: FakeSinch,
    content: dict[str, Any],
    text: str,
    postback: str | None,
    media: list[tuple[str, str | None]],
) -> None:
    body = fake.inbound_body(contact="+46701234567", message_id="mo-k", channel="WHATSAPP", content=content)
    [message] = (await channel.parse_webhook(signed(fake, sender, body), sender)).messages
    assert message.text == text
    assert message.postback == postback
    assert [(m.url, m.caption) for m in message.media] == media
    assert message.contact == "+46701234567"


async def test_app_scoped_identity_is_kept(channel: SinchChannel, sender: SenderContext, fake: FakeSinch) -> None:
    body = fake.inbound_body("hey", "2742085512340733", "mo-m", channel="MESSENGER")
    [message] = (await channel.parse_webhook(signed(fake, sender, body), sender)).messages
    assert message.contact == "2742085512340733"
    assert message.to_address == sender.address


async def test_unsupported_content_and_other_triggers_are_acknowledged(
    channel: SinchChannel, sender: SenderContext, fake: FakeSinch
) -> None:
    product = fake.inbound_body(content={"product_response_message": {"products": []}}, message_id="mo-p")
    assert (await channel.parse_webhook(signed(fake, sender, product), sender)).messages == []
    for key in ("event", "message_submit_notification", "opt_in_notification", "unsupported_callback"):
        body = json.dumps({"app_id": fake.app_id, "project_id": "", key: {"anything": 1}}).encode()
        result = await channel.parse_webhook(signed(fake, sender, body), sender)
        assert result.messages == [] and result.reports == []


async def test_delivery_statuses(channel: SinchChannel, sender: SenderContext, fake: FakeSinch) -> None:
    async def parse(status: str, **kw: Any) -> list[Any]:
        body = fake.report_body("01MSG", status, **kw)
        return (await channel.parse_webhook(signed(fake, sender, body), sender)).reports

    [failed] = await parse("FAILED", reason_code="OUTSIDE_ALLOWED_SENDING_WINDOW", reason_description="24 hours")
    assert (failed.state, failed.reason_code, failed.reason_description) == (
        "FAILED",
        "OUTSIDE_ALLOWED_SENDING_WINDOW",
        "24 hours",
    )
    assert failed.contact == "+46701234567"
    [switching] = await parse("SWITCHING_CHANNEL")
    assert (switching.state, switching.reason_code) == ("QUEUED", "SWITCHING_CHANNEL")
    [delivered] = await parse("DELIVERED")
    assert delivered.reason_code is None
    assert await parse("SOME_FUTURE_STATUS") == []


@pytest.mark.parametrize(
    "payload",
    [
        {"project_id": "p", "message": {}},  # no app_id
        {"app_id": 5},
        {"app_id": "a", "message": {"id": "m"}},
        {"app_id": "a", "message": {"id": "", "contact_message": {}, "channel_identity": {"identity": "1"}}},
        {"app_id": "a", "message_delivery_report": {"message_id": "m"}},
        {"app_id": "a", "message_delivery_report": "x"},
        {
            "app_id": "a",
            "message": {
                "id": "m",
                "contact_message": {"location_message": {"coordinates": {"latitude": "north"}}},
                "channel_identity": {"identity": "1"},
            },
        },
    ],
)
async def test_signed_but_wrong_payloads_are_malformed(
    channel: SinchChannel, sender: SenderContext, fake: FakeSinch, payload: dict[str, Any]
) -> None:
    with pytest.raises(MalformedWebhook):
        await channel.parse_webhook(signed(fake, sender, json.dumps(payload).encode()), sender)


_ids = st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.text(max_size=200),
    identity=st.one_of(st.from_regex(r"\+?[0-9]{6,15}", fullmatch=True), _ids),
    channel_name=st.sampled_from(["SMS", "WHATSAPP", "RCS", "MESSENGER", "LINE", "VIBERBM", "NEWCHANNEL"]),
    message_id=_ids,
    extra=st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10), max_size=3),
)
async def test_any_signed_inbound_variant_parses(
    channel: SinchChannel,
    sender: SenderContext,
    fake: FakeSinch,
    text: str,
    identity: str,
    channel_name: str,
    message_id: str,
    extra: dict[str, Any],
) -> None:
    data = json.loads(fake.inbound_body(text, identity, message_id, channel=channel_name))
    data.update({k: v for k, v in extra.items() if k not in data})
    data["message"]["channel_identity"]["identity"] = identity
    body = json.dumps(data, ensure_ascii=False).encode()
    [message] = (await channel.parse_webhook(signed(fake, sender, body), sender)).messages
    assert message.text == text
    assert message.provider_message_id == message_id
    if channel_name in ("SMS", "WHATSAPP", "RCS", "VIBERBM") and identity.isdigit():
        assert message.contact == "+" + identity
    else:
        assert message.contact == identity.strip()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(app_id=st.text(max_size=40), message_id=_ids)
async def test_callbacks_of_another_app_carry_nothing(
    channel: SinchChannel, sender: SenderContext, fake: FakeSinch, app_id: str, message_id: str
) -> None:
    # Correctly signed (the webhook's secret is registered at that app too), but
    # not about our app: nothing is handed on, and the answer stays a 2xx.
    if app_id == fake.app_id:
        return
    inbound = json.loads(fake.inbound_body("hi", "+15550001111", message_id))
    report = json.loads(fake.report_body(message_id, "DELIVERED", message_metadata=sender.id))
    for data in (inbound, report):
        data["app_id"] = app_id
        result = await channel.parse_webhook(signed(fake, sender, json.dumps(data).encode()), sender)
        assert result.messages == [] and result.reports == []
        data["app_id"] = fake.app_id  # the very same callback from our app is taken
        result = await channel.parse_webhook(signed(fake, sender, json.dumps(data).encode()), sender)
        assert len(result.messages) + len(result.reports) == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    headers=st.fixed_dictionaries(
        {},
        optional={
            "x-sinch-webhook-signature": st.text(max_size=60),
            "x-sinch-webhook-signature-nonce": st.text(max_size=40),
            "x-sinch-webhook-signature-timestamp": st.one_of(st.text(max_size=15), st.integers().map(str)),
            "x-sinch-webhook-signature-algorithm": st.text(max_size=15),
        },
    )
)
async def test_arbitrary_sinch_headers_only_get_401(
    channel: SinchChannel, sender: SenderContext, fake: FakeSinch, headers: dict[str, str]
) -> None:
    body = fake.inbound_body("hi", "+15550001111", "mo-x")
    with pytest.raises(InvalidSignature):
        await channel.parse_webhook(WebhookRequest("POST", sender.webhook_url, headers, body), sender)


# --- outbound --------------------------------------------------------------


async def test_sms_send_body_and_fragments(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake, sms_sender="+46700000000")
    message = OutboundMessage(sender_id=sender.id, contact="+46701234567", text="x" * 200)
    result = await channel.send(sender, message)
    body = fake.sent[-1]["body"]
    assert body["recipient"] == {
        "identified_by": {"channel_identities": [{"channel": "SMS", "identity": "46701234567"}]}
    }
    assert body["message"] == {"text_message": {"text": "x" * 200}}
    assert body["channel_properties"] == {"SMS_SENDER": "+46700000000"}
    assert body["correlation_id"] == message.id
    assert result.provider_message_id == fake.sent[-1]["message_id"]
    assert len(result.provider_message_id) == 26
    assert result.fragments_count == 2


async def test_options_on_sms_become_numbered_text_and_media_links(
    channel: SinchChannel, sender: SenderContext, fake: FakeSinch
) -> None:
    message = OutboundMessage(
        sender_id=sender.id,
        contact="+46701234567",
        text="Pick one",
        options=[Option(label="Billing", value="billing"), Option(label="Sales", value="sales")],
        media=[Media(url="https://cdn.example/menu.pdf", caption="Menu")],
    )
    await channel.send(sender, message)
    assert len(fake.sent) == 1
    text = fake.sent[-1]["text"]
    assert text.startswith("Pick one\nMenu: https://cdn.example/menu.pdf\n1. Billing\n2. Sales")
    assert "channel_properties" not in fake.sent[-1]["body"]


async def test_options_on_whatsapp_become_a_choice_message(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake, channel="WHATSAPP")
    message = OutboundMessage(
        sender_id=sender.id,
        contact="+46701234567",
        text="Confirm your booking?",
        options=[Option(label="Yes", value="confirm"), Option(label="No", value="cancel")],
    )
    await channel.send(sender, message)
    assert fake.sent[-1]["message"] == {
        "choice_message": {
            "choices": [
                {"text_message": {"text": "Yes"}, "postback_data": "confirm"},
                {"text_message": {"text": "No"}, "postback_data": "cancel"},
            ],
            "text_message": {"text": "Confirm your booking?"},
        }
    }
    assert fake.sent[-1]["to"] == "46701234567"
    assert channel.capabilities(sender).options is True
    assert channel.capabilities(make_sender(fake)).options is False


async def test_more_than_ten_options_fall_back_to_numbered_text(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake, channel="RCS")
    options = [Option(label=f"Item {i}", value=str(i)) for i in range(11)]
    await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+4670", text="Menu", options=options))
    assert "text_message" in fake.sent[-1]["message"]
    assert "11. Item 10" in fake.sent[-1]["text"]


async def test_media_on_rich_channels_is_native(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake, channel="MESSENGER")
    message = OutboundMessage(
        sender_id=sender.id,
        contact="2742085512340733",
        text="Here",
        media=[Media(url="https://cdn.example/a.jpg", caption="A")],
    )
    result = await channel.send(sender, message)
    # One card, not media then text: one send, one id the reports match.
    assert [m["message"] for m in fake.sent] == [
        {"card_message": {"media_message": {"url": "https://cdn.example/a.jpg"}, "description": "Here\nA"}},
    ]
    assert fake.sent[0]["to"] == "2742085512340733"
    assert result.provider_message_id == fake.sent[-1]["message_id"]
    assert result.fragments_count is None
    bare = OutboundMessage(sender_id=sender.id, contact="274", media=[Media(url="https://cdn.example/b.jpg")])
    await channel.send(sender, bare)
    assert fake.sent[-1]["message"] == {"media_message": {"url": "https://cdn.example/b.jpg"}}


YES_NO = [Option(label="Yes", value="confirm"), Option(label="No", value="cancel")]
YES_NO_CHOICES = [
    {"text_message": {"text": "Yes"}, "postback_data": "confirm"},
    {"text_message": {"text": "No"}, "postback_data": "cancel"},
]


def _seat_message(sender: SenderContext, *urls: str) -> OutboundMessage:
    return OutboundMessage(
        sender_id=sender.id,
        contact="+46701234567",
        text="Your seat?",
        options=YES_NO,
        media=[Media(url=url) for url in urls],
    )


async def test_several_media_are_one_carousel_where_the_channel_has_one(channel: SinchChannel, fake: FakeSinch) -> None:
    # One send per reply: a second would be an id no report reaches, and a part a retry could repeat.
    sender = make_sender(fake, channel="RCS")
    result = await channel.send(sender, _seat_message(sender, "https://cdn.example/a.jpg", "https://cdn.example/b.jpg"))
    [record] = fake.sent
    assert record["message"] == {
        "carousel_message": {
            "cards": [
                {"media_message": {"url": "https://cdn.example/a.jpg"}, "description": "Your seat?"},
                {"media_message": {"url": "https://cdn.example/b.jpg"}},
            ],
            "choices": YES_NO_CHOICES,
        }
    }
    assert result.provider_message_id == record["message_id"]
    # Beyond Sinch's 10 cards the media are links; Instagram shows no outer choices: numbered text.
    instagram = make_sender(fake, channel="INSTAGRAM")
    urls = [f"https://cdn.example/{i}.jpg" for i in range(12)]
    await channel.send(instagram, _seat_message(instagram, *urls))
    carousel = fake.sent[-1]["message"]["carousel_message"]
    assert [c["media_message"]["url"] for c in carousel["cards"]] == urls[:10] and "choices" not in carousel
    assert carousel["cards"][0]["description"] == (
        "Your seat?\nhttps://cdn.example/10.jpg\nhttps://cdn.example/11.jpg\n1. Yes\n2. No\nReply with a number."
    )
    assert len(fake.sent) == 2


async def test_several_media_elsewhere_are_one_card_with_links(channel: SinchChannel, fake: FakeSinch) -> None:
    # WhatsApp has no carousel (Sinch would turn it into text): the first media heads the card.
    for kind in ("WHATSAPP", "TELEGRAM"):
        fake.sent.clear()
        sender = make_sender(fake, channel=kind)
        message = _seat_message(sender, "https://cdn.example/seat.jpg", "https://cdn.example/plan.pdf")
        message.media[1].caption = "Plan"
        result = await channel.send(sender, message)
        [record] = fake.sent
        assert record["message"] == {
            "card_message": {
                "media_message": {"url": "https://cdn.example/seat.jpg"},
                "description": "Your seat?\nPlan: https://cdn.example/plan.pdf",
                "choices": YES_NO_CHOICES,
            }
        }
        assert result.provider_message_id == record["message_id"]


async def test_mms_media_and_text_are_one_card(channel: SinchChannel, fake: FakeSinch) -> None:
    # Sinch's MMS channel renders a card (media + text) as one MMS; options are numbered text there.
    sender = make_sender(fake, channel="MMS", sms_sender="+46700000000")
    message = _seat_message(sender, "https://cdn.example/seat.jpg")
    result = await channel.send(sender, message)
    [record] = fake.sent
    assert record["message"] == {
        "card_message": {
            "media_message": {"url": "https://cdn.example/seat.jpg"},
            "description": "Your seat?\n1. Yes\n2. No\nReply with a number.",
        }
    }
    assert record["body"]["channel_properties"] == {"MMS_SENDER": "+46700000000"}
    assert result.provider_message_id == record["message_id"] and result.fragments_count == 1


async def test_channels_without_cards_get_one_text_with_links(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake, channel="WECHAT")
    await channel.send(sender, _seat_message(sender, "https://cdn.example/a.jpg"))
    assert [r["message"] for r in fake.sent] == [
        {"text_message": {"text": "Your seat?\nhttps://cdn.example/a.jpg\n1. Yes\n2. No\nReply with a number."}}
    ]
    bare = OutboundMessage(sender_id=sender.id, contact="u1", media=[Media(url="https://cdn.example/b.jpg")])
    await channel.send(sender, bare)
    assert fake.sent[-1]["message"] == {"media_message": {"url": "https://cdn.example/b.jpg"}}


async def test_a_long_text_gives_way_to_links_and_options(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake, channel="VIBERBM")  # 1000 characters
    message = _seat_message(sender, "https://cdn.example/seat.jpg", "https://cdn.example/b.jpg")
    message.text = "z" * 5000
    await channel.send(sender, message)
    description = fake.sent[-1]["message"]["card_message"]["description"]
    assert len(description) == 1000
    assert description.endswith("z\nhttps://cdn.example/b.jpg")


_urls = st.from_regex(r"https://cdn\.example/[a-z0-9]{1,12}\.(jpg|png|pdf|mp4)", fullmatch=True)


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return [node] if isinstance(node, str) else []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["SMS", "MMS", "WHATSAPP", "RCS", "MESSENGER", "INSTAGRAM", "TELEGRAM", "VIBERBM", "WECHAT"]),
    text=st.text(max_size=300),
    media=st.lists(st.builds(Media, url=_urls, caption=st.none() | st.text(min_size=1, max_size=15)), max_size=12),
    options=st.lists(st.builds(Option, label=st.text(max_size=25), value=st.text(max_size=20)), max_size=6),
)
async def test_any_reply_is_one_send_that_carries_every_part(
    channel: SinchChannel,
    fake: FakeSinch,
    kind: str,
    text: str,
    media: list[Media],
    options: list[Option],
) -> None:
    # What a bot replies comes from outside: whatever it holds, one messages:send
    # (which the fake, and at teardown the SDK's models, accept) carries all of
    # it, natively or as links and numbered lines, and its id is the result.
    sender = make_sender(fake, channel=kind)
    message = OutboundMessage(sender_id=sender.id, contact="+46701234567", text=text, media=media, options=options)
    before = len(fake.sent)
    try:
        result = await channel.send(sender, message)
    except SendError as exc:
        assert not (text.strip() or media or options) and not exc.retryable
        assert len(fake.sent) == before
        return
    assert len(fake.sent) == before + 1
    record = fake.sent[-1]
    assert result.provider_message_id == record["message_id"]
    carried = "\n".join(_strings(record["message"]))
    assert all(m.url in carried for m in media)
    choices = [
        c
        for key in ("choice_message", "card_message", "carousel_message")
        for c in (record["message"].get(key) or {}).get("choices", [])
    ]
    if choices:
        assert [c["postback_data"] for c in choices] == [o.value for o in options]
    else:
        assert all(f"{i}. {o.label}" in carried for i, o in enumerate(options, start=1))


async def test_whatsapp_buttons_only_for_three_short_choices(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake, channel="WHATSAPP")
    four = [Option(label=f"Plan {i}", value=str(i)) for i in range(4)]
    long_label = [Option(label="Talk to a human being please", value="human"), Option(label="No", value="no")]
    for options in (four, long_label):
        await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+4670", text="Pick", options=options))
        assert list(fake.sent[-1]["message"]) == ["text_message"]
        assert fake.sent[-1]["text"].startswith("Pick\n1. ")
    with_media = OutboundMessage(
        sender_id=sender.id, contact="+4670", text="Pick", options=four, media=[Media(url="https://cdn.example/p.png")]
    )
    await channel.send(sender, with_media)
    card = fake.sent[-1]["message"]["card_message"]
    assert "choices" not in card and "4. Plan 3" in card["description"]
    three = four[:3]
    await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+4670", text="Pick", options=three))
    assert len(fake.sent[-1]["message"]["choice_message"]["choices"]) == 3
    # RCS suggestions have no such limit.
    rcs = make_sender(fake, channel="RCS")
    await channel.send(rcs, OutboundMessage(sender_id=rcs.id, contact="+4670", text="Pick", options=four))
    assert len(fake.sent[-1]["message"]["choice_message"]["choices"]) == 4


async def test_mms_names_its_sender_mms_sender(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake, channel="MMS", sms_sender="+46700000000")
    await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+46701234567", text="pic"))
    assert fake.sent[-1]["body"]["channel_properties"] == {"MMS_SENDER": "+46700000000"}


async def test_long_text_is_truncated_to_the_channel_limit(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake, channel="INSTAGRAM")
    await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="123", text="y" * 5000))
    assert fake.sent[-1]["text"] == "y" * 1000


async def test_empty_message_is_not_sent(channel: SinchChannel, sender: SenderContext, fake: FakeSinch) -> None:
    with pytest.raises(SendError) as caught:
        await channel.send(sender, OutboundMessage(sender_id=sender.id, contact="+4670", text="  "))
    assert not caught.value.retryable
    assert fake.sent == []


# --- OAuth -------------------------------------------------------------------


def _msg(sender: SenderContext, text: str = "hi") -> OutboundMessage:
    return OutboundMessage(sender_id=sender.id, contact="+46701234567", text=text)


async def test_token_is_cached_until_shortly_before_expiry(
    channel: SinchChannel, sender: SenderContext, fake: FakeSinch, clock: FakeClock
) -> None:
    await channel.send(sender, _msg(sender))
    await channel.send(sender, _msg(sender))
    assert fake.token_requests == 1
    clock.advance(3600 - 61)
    await channel.send(sender, _msg(sender))
    assert fake.token_requests == 1
    clock.advance(2)  # inside the early-refresh margin
    await channel.send(sender, _msg(sender))
    assert fake.token_requests == 2
    assert fake.sent[-1]["authorization"] != fake.sent[0]["authorization"]


async def test_concurrent_sends_share_one_token_request(
    channel: SinchChannel, sender: SenderContext, fake: FakeSinch
) -> None:
    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(channel.send, sender, _msg(sender, f"m{i}"))
    assert fake.token_requests == 1
    assert len(fake.sent) == 8


async def test_expired_token_is_refreshed_once(channel: SinchChannel, sender: SenderContext, fake: FakeSinch) -> None:
    await channel.send(sender, _msg(sender))
    fake.expire_tokens()
    await channel.send(sender, _msg(sender, "after expiry"))
    assert fake.token_requests == 2
    assert fake.sent[-1]["text"] == "after expiry"


async def test_invalid_token_is_a_credentials_error(
    channel: SinchChannel, sender: SenderContext, fake: FakeSinch
) -> None:
    await channel.send(sender, _msg(sender))
    fake.tokens.clear()  # the API no longer knows the token, and does not say "expired"
    with pytest.raises(CredentialsInvalid):
        await channel.send(sender, _msg(sender))


async def test_wrong_key_is_a_credentials_error_without_the_secret(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake)
    sender.credentials = credentials_json(fake, key_secret="wrong-secret-value-123")
    with pytest.raises(CredentialsInvalid) as caught:
        await channel.send(sender, _msg(sender))
    assert "wrong-secret-value-123" not in str(caught.value)
    assert fake.sent == []


# --- errors and retries ---------------------------------------------------------


async def test_429_is_retried_honouring_retry_after(fake: FakeSinch, http: httpx.AsyncClient) -> None:
    slept: list[float] = []

    class Clock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            slept.append(seconds)

    channel = SinchChannel(http, Clock(fake.clock.now()), retry=FAST_RETRY.__class__(attempts=3, base=0, cap=5))
    sender = make_sender(fake)
    fake.fail_next(429, times=2, retry_after=2)
    result = await channel.send(sender, _msg(sender))
    assert result.provider_message_id == fake.sent[-1]["message_id"]
    assert slept == [2.0, 2.0]


async def test_a_5xx_on_send_is_outcome_unknown_and_never_repeated(
    channel: SinchChannel, sender: SenderContext, fake: FakeSinch
) -> None:
    # Sinch may have queued the message before failing, and offers no lookup by our reference.
    fake.fail_next(503, times=1)
    with pytest.raises(SendError) as caught:
        await channel.send(sender, _msg(sender))
    assert caught.value.retryable and caught.value.status_code == 503 and caught.value.outcome_unknown
    assert not channel.finds_sent
    assert fake.sent == []
    await channel.send(sender, _msg(sender))  # one attempt was made: the next send is the next request
    assert len(fake.sent) == 1


async def test_4xx_is_final(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake)
    sender.credentials = credentials_json(fake, app_id="NOT-AN-APP")
    with pytest.raises(SendError) as caught:
        await channel.send(sender, _msg(sender))
    assert not caught.value.retryable and caught.value.status_code == 400
    assert "INVALID_ARGUMENT" in str(caught.value)


async def test_wrong_region_is_a_404(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake, region="eu")  # the fake's app lives in us
    with pytest.raises(SendError) as caught:
        await channel.send(sender, _msg(sender))
    assert caught.value.status_code == 404 and not caught.value.retryable


async def test_unreachable_provider_is_retryable(clock: FakeClock, fake: FakeSinch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        channel = SinchChannel(http, clock, retry=FAST_RETRY)
        sender = make_sender(fake)
        with pytest.raises(SendError) as caught:
            await channel.send(sender, _msg(sender))
    assert caught.value.retryable


# --- sender validation ---------------------------------------------------------------


async def test_validate_sender(channel: SinchChannel, fake: FakeSinch) -> None:
    creds = credentials_json(fake)
    config = channel.validate_sender("+4670", creds, "s", {"channel": "whatsapp", "region": "EU"})
    assert config == {"channel": "WHATSAPP", "region": "eu"}
    assert channel.validate_sender("+4670", creds, "", {"provision": True})["provision"] is True
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("", "s", {}, "credentials"),
        ("not json", "s", {}, "credentials"),
        ('["list"]', "s", {}, "credentials"),
        (credentials_json(fake, key_secret=""), "s", {}, "credentials.key_secret"),
        (json.dumps({"project_id": "p", "app_id": "a", "key_id": "k"}), "s", {}, "credentials.key_secret"),
        (creds, "", {}, "webhook_secret"),
        (creds, "s", {"region": "ap"}, "config.region"),
        (creds, "s", {"channel": "not a channel"}, "config.channel"),
        (creds, "s", {"sms_sender": 46700000000}, "config.sms_sender"),
        (creds, "s", {"base_url": "ftp://x"}, "config.base_url"),
        (creds, "s", {"auth_url": "nohost"}, "config.auth_url"),
        (creds, "s", {"provision": "yes"}, "config.provision"),
        (creds, "s", {"signature_window": -1}, "config.signature_window"),
    ]
    for credentials, secret, cfg, field in cases:
        with pytest.raises(ConfigInvalid) as caught:
            channel.validate_sender("+4670", credentials, secret, cfg)
        assert caught.value.field == field, (cfg, caught.value.field)
        assert fake.key_secret not in str(caught.value)


# --- provisioning ------------------------------------------------------------------


async def test_provision_and_deprovision(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake, provision=True)
    result = await channel.provision(sender)
    assert result is not None and result.webhook_secret
    [webhook] = fake.webhooks.values()
    assert result.config == {"webhook_id": webhook["id"]}
    assert webhook["target"] == sender.webhook_url
    assert webhook["secret"] == result.webhook_secret
    assert webhook["triggers"] == ["MESSAGE_INBOUND", "MESSAGE_DELIVERY"]
    # The same target twice is refused by Sinch.
    with pytest.raises(SendError) as caught:
        await channel.provision(sender)
    assert caught.value.status_code == 400
    sender.sender.config.update(result.config)
    await channel.deprovision(sender)
    assert fake.webhooks == {}
    await channel.deprovision(sender)  # already gone: nothing to undo


async def test_provision_needs_an_absolute_url(channel: SinchChannel, fake: FakeSinch) -> None:
    sender = make_sender(fake, provision=True)
    sender.webhook_url = "/v1/webhooks/sinch/snd-1"
    with pytest.raises(SendError, match="PUBLIC_URL"):
        await channel.provision(sender)
    assert fake.webhooks == {}


# --- over real loopback HTTP ------------------------------------------------------------


@pytest.fixture
def loopback_fake() -> Iterator[tuple[FakeSinch, str]]:
    fake = FakeSinch()
    with serve_app(fake.app) as url:
        yield fake, url


async def test_send_over_loopback_http(loopback_fake: tuple[FakeSinch, str]) -> None:
    fake, base = loopback_fake
    async with httpx.AsyncClient() as http:
        channel = SinchChannel(http, FakeClock(time.time()), retry=FAST_RETRY)
        sender = make_sender(fake, base_url=base, auth_url=base)
        result = await channel.send(sender, _msg(sender, "over the wire"))
    [record] = fake.sent
    assert record["message_id"] == result.provider_message_id
    assert record["auth"] == "bearer"
    assert record["authorization"].startswith("Bearer fake-")
    assert record["body"]["message"] == {"text_message": {"text": "over the wire"}}
    assert fake.token_requests == 1
