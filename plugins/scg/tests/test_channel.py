from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botbridge.channel import SenderContext, WebhookRequest
from botbridge.clock import FakeClock
from botbridge.errors import (
    ConfigInvalid,
    CredentialsInvalid,
    InvalidSignature,
    MalformedWebhook,
    SendError,
    WebhookRejected,
)
from botbridge.http import RetryPolicy
from botbridge.loopback import serve_app
from botbridge.models import Event, Media, Option, OutboundMessage, Sender
from botbridge.testing import ChannelContract, ChannelHarness
from botbridge_scg import ScgChannel, normalize_address
from botbridge_scg.channel import _epoch, rcs_reply, sender_from
from botbridge_scg.ess_auth import check_authorization
from botbridge_scg.testing import FakeScg

pytestmark = pytest.mark.anyio

SCG_STATE = {"QUEUED": "CREATED", "SENT": "SENT", "DELIVERED": "DELIVERED", "READ": "READ", "FAILED": "FAILED"}
HYPO = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- the core contract ---------------------------------------------------------


class TestScgContract(ChannelContract):
    @pytest.fixture
    def harness(self, fake: FakeScg, channel: ScgChannel, make_sender, ess_request, consts) -> ChannelHarness:  # type: ignore[no-untyped-def]
        # With a user name configured, every byte of the Basic credentials counts.
        sender = make_sender({"webhook_username": "syniverse"})

        def sign(body: bytes, secret: str | None = None, age: float = 0.0) -> WebhookRequest:
            return ess_request(body, url=sender.webhook_url, secret=secret, age=age)

        async def after_send(record: dict[str, Any]) -> None:
            assert record["token"] == consts.token
            assert record["from"] == consts.sender_from
            assert fake.requests_seen[-1]["authorization"] == f"Bearer {consts.token}"
            assert fake.requests_seen[-1]["path"] == "/scg-external-api/api/v1/messaging/message_requests"

        return ChannelHarness(
            channel=channel,
            sender=sender,
            sign=sign,
            inbound_body=lambda text, contact, mid: fake.encode(
                fake.mo_event(text, contact, consts.address, message_id=mid)
            ),
            report_body=lambda pid, state: fake.encode(fake.state_event(pid, SCG_STATE[state])),
            sent=lambda: fake.sent,
            signs_timestamp=False,
            report_states=("SENT", "DELIVERED", "READ", "FAILED"),
            after_send=after_send,
        )

    # ESS authenticates the request, not the body: there is no signature a
    # changed body byte could break. These two replace the contract's body
    # tampering checks with their equivalent for Basic credentials.
    async def test_one_changed_byte_is_refused(self, harness: ChannelHarness) -> None:
        body = harness.inbound_body("Hello there", "+15551230001", "mo-2")
        good = harness.sign(body)
        header = good.headers["authorization"]
        for position in (7, len(header) // 2, len(header) - 1):
            changed = header[:position] + chr(ord(header[position]) ^ 1) + header[position + 1 :]
            forged = WebhookRequest(good.method, good.url, {**good.headers, "authorization": changed}, body)
            with pytest.raises(InvalidSignature):
                await harness.channel.parse_webhook(forged, harness.sender)

    async def test_refusal_never_echoes_the_expected_signature(self, harness: ChannelHarness) -> None:
        body = harness.inbound_body("Hi", "+15551230001", "mo-5")
        secret = harness.sender.webhook_secret
        for wrong in (
            secret[:-1],
            secret + "x",
            "Bearer",
            "Basic " + base64.b64encode(b"u:" + secret[1:].encode()).decode(),
        ):
            request = harness.sign(body)
            request = WebhookRequest("POST", request.url, {**request.headers, "authorization": wrong}, body)
            with pytest.raises(InvalidSignature) as caught:
                await harness.channel.parse_webhook(request, harness.sender)
            assert secret not in str(caught.value)
            assert secret[:-1] not in str(caught.value)


# --- inbound: the documented payloads ---------------------------------------------

SEED_MO = {
    "topic": "SCG-Message",
    "attempt": 1,
    "event": {
        "fld-val-list": {
            "sender_id_alias": "whatsapp_18329997008",
            "mo_price": 0,
            "company-id": 1234,
            "sender_id_id": "7ox2XHyusalKVReJSUEKd4",
            "message_body": "hi",
            "message_id": "xv2zjeoLRzJ8NFztxIx632",
            "to_address": "18329997008",
            "has_attachment": False,
            "from_address": "+18138091234",
            "application_id": 9762,
        },
        "evt-tp": "mo_message_received",
        "timestamp": "2022-06-17T18:24:48.06Z",
    },
    "event-id": "5OUWbEpORW63m_JXUdZlXA",
}

SEED_DR = {
    "topic": "SCG-Message",
    "attempt": "1",
    "event": {
        "fld-val-list": {
            "previous_state": "QUEUED",
            "new_state": "SENT",
            "message_request_id": "QlrNeo2cxytluN4mwejKd7",
            "message_id": "WQSPV67548kjmcWQSPV675",
            "to_address": "+14085551212",
            "from_address": "28776",
            "has_attachment": False,
            "reason_code": "200",
            "reason_description": "SUCCESS",
            "application_id": 1234,
            "sender_id_alias": "28776",
            "company-id": 1063,
            "sender_id_id": "Vk0XyVo8AkoSbScfERWwc4",
            "external_message_request_id": "",
            "fragments_count": 1,
            "mt_price": "0.0075",
        },
        "evt-tp": "message_state_change",
        "timestamp": "2019-08-16T01:28:44.526Z",
    },
    "event_id": "7XuuKlVCSvSyIw_MPYXBug",
}


async def test_documented_mo_sample(channel: ScgChannel, make_sender, ess_request) -> None:  # type: ignore[no-untyped-def]
    sender = make_sender({"channel_type": "whatsapp"})
    result = await channel.parse_webhook(ess_request(json.dumps(SEED_MO).encode()), sender)
    assert result.reports == []
    [message] = result.messages
    assert message.provider_message_id == "xv2zjeoLRzJ8NFztxIx632"
    assert message.contact == "+18138091234"
    assert message.to_address == "18329997008"
    assert message.text == "hi"
    assert message.postback is None
    assert message.received_at.year == 2022
    assert message.metadata["event_id"] == "5OUWbEpORW63m_JXUdZlXA"


async def test_documented_dr_sample_with_event_id_underscore_and_string_attempt(
    channel: ScgChannel, make_sender, ess_request
) -> None:  # type: ignore[no-untyped-def]
    result = await channel.parse_webhook(ess_request(json.dumps(SEED_DR).encode()), make_sender())
    assert result.messages == []
    [report] = result.reports
    assert report.provider_message_id == "QlrNeo2cxytluN4mwejKd7"  # the id send returns
    assert report.state == "SENT"
    assert report.reason_code == "200"
    assert report.reason_description == "SUCCESS"
    assert report.contact == "+14085551212"


@pytest.mark.parametrize(
    ("scg_state", "ours"),
    [
        ("CREATED", "QUEUED"),
        ("QUEUED", "QUEUED"),
        ("SENT", "SENT"),
        ("DELIVERED", "DELIVERED"),
        ("READ", "READ"),
        ("CONVERTED", "READ"),
        ("FAILED", "FAILED"),
        ("EXPIRED", "FAILED"),
    ],
)
async def test_message_states_are_mapped(channel, make_sender, ess_request, fake, scg_state, ours) -> None:  # type: ignore[no-untyped-def]
    body = fake.encode(
        fake.state_event("Req0000000000000000001", scg_state, reason_code=7 if ours == "FAILED" else None)
    )
    [report] = (await channel.parse_webhook(ess_request(body), make_sender())).reports
    assert report.state == ours
    if ours == "FAILED":
        assert report.reason_code == "7"  # a number is accepted and kept as text
        assert report.reason_description


async def test_failed_report_carries_the_reason(channel, make_sender, ess_request, fake) -> None:  # type: ignore[no-untyped-def]
    body = fake.encode(fake.state_event("Req0000000000000000001", "FAILED", reason_code="1002"))
    [report] = (await channel.parse_webhook(ess_request(body), make_sender())).reports
    assert (report.state, report.reason_code) == ("FAILED", "1002")
    assert report.reason_description == "Invalid recipient address or format"


async def test_request_level_events_use_the_request_id(channel, make_sender, ess_request, fake) -> None:  # type: ignore[no-untyped-def]
    for scg_state, ours in (("ACCEPTED", "QUEUED"), ("COMPLETED", "SENT"), ("REJECTED", "FAILED")):
        event = fake.state_event("Req0000000000000000002", scg_state, request_level=True)
        event["event"]["fld-val-list"].pop("message_id")
        [report] = (await channel.parse_webhook(ess_request(fake.encode(event)), make_sender())).reports
        assert (report.provider_message_id, report.state) == ("Req0000000000000000002", ours)


async def test_message_id_is_the_fallback_key(channel, make_sender, ess_request, fake) -> None:  # type: ignore[no-untyped-def]
    event = fake.state_event(
        "x", "DELIVERED", extra={"message_request_id": None, "message_id": "Msg000000000000000000X"}
    )
    [report] = (await channel.parse_webhook(ess_request(fake.encode(event)), make_sender())).reports
    assert report.provider_message_id == "Msg000000000000000000X"
    event["event"]["fld-val-list"]["message_id"] = ""
    with pytest.raises(MalformedWebhook):
        await channel.parse_webhook(ess_request(fake.encode(event)), make_sender())


async def test_unknown_types_topics_and_states_are_acknowledged(channel, make_sender, ess_request, fake) -> None:  # type: ignore[no-untyped-def]
    other_type = fake.envelope("contact_created", {"id": "abc"})
    other_topic = {**fake.mo_event("hi", "+15551230001"), "topic": "SCG-Voice"}
    unknown_state = fake.state_event("Req0000000000000000003", "TEST")
    for event in (other_type, other_topic, unknown_state):
        result = await channel.parse_webhook(ess_request(fake.encode(event)), make_sender())
        assert result.messages == [] and result.reports == []


async def test_unknown_keys_and_extra_shapes_are_tolerated(channel, make_sender, ess_request, fake) -> None:  # type: ignore[no-untyped-def]
    event = fake.mo_event("hello", "14085551212", "18338580861", extra={"anti_virus_scan_status": "CLEAN", "x": [1]})
    event["unknown_top_level"] = {"a": 1}
    event["attempt"] = "3"
    [message] = (await channel.parse_webhook(ess_request(fake.encode(event)), make_sender())).messages
    assert message.contact == "+14085551212"  # SCG sometimes drops the +
    assert message.to_address == "18338580861"  # our address, raw
    assert message.metadata["attempt"] == 3


async def test_media_and_attachments(channel, make_sender, ess_request, fake) -> None:  # type: ignore[no-untyped-def]
    event = fake.mo_event(
        "look",
        "+15551230001",
        media_urls=["https://cdn.example/a.jpg"],
        attachment_ids=["Att0000000000000000001", "Att0000000000000000002"],
    )
    [message] = (
        await channel.parse_webhook(ess_request(fake.encode(event)), make_sender({"channel_type": "mms"}))
    ).messages
    urls = [m.url for m in message.media]
    assert urls[0] == "https://cdn.example/a.jpg"
    # SCG's own attachment URL is metadata behind its token: the bot gets an expiring host URL.
    sender_url = make_sender().webhook_url.rsplit("/", 1)[0]
    assert all(url.startswith(sender_url) and "/attachments/" in url for url in urls[1:])
    assert "scg-external-api" not in " ".join(urls) and "Att0000000000000000001" not in " ".join(urls)
    assert len(urls) == 3
    assert message.metadata["attachment_ids"] == ["Att0000000000000000001", "Att0000000000000000002"]


async def test_rcs_postback_and_location(channel, make_sender, ess_request, fake) -> None:  # type: ignore[no-untyped-def]
    rcs = make_sender({"channel_type": "rcs"})
    body = json.dumps({"suggestionResponse": {"postbackData": "billing", "text": "Billing"}})
    [message] = (
        await channel.parse_webhook(ess_request(fake.encode(fake.mo_event(body, "+15551230001"))), rcs)
    ).messages
    assert (message.text, message.postback) == ("Billing", "billing")

    location = json.dumps({"location": {"latitude": 48.85, "longitude": 2.35, "label": "Paris"}})
    [message] = (
        await channel.parse_webhook(ess_request(fake.encode(fake.mo_event(location, "+15551230001"))), rcs)
    ).messages
    assert message.text == "Location: 48.85,2.35 (Paris)"

    # On SMS, a user typing JSON is just text.
    typed = '{"text": "not rcs"}'
    [message] = (
        await channel.parse_webhook(ess_request(fake.encode(fake.mo_event(typed, "+15551230001"))), make_sender())
    ).messages
    assert (message.text, message.postback) == (typed, None)


async def test_truncated_body_is_flagged(channel, make_sender, ess_request, fake) -> None:  # type: ignore[no-untyped-def]
    event = fake.mo_event("x" * 2000, "+15551230001")
    [message] = (await channel.parse_webhook(ess_request(fake.encode(event)), make_sender())).messages
    assert len(message.text) == 1530
    assert message.metadata["message_body_truncated"] is True


@pytest.mark.parametrize(
    "body",
    [
        b'{"topic": "SCG-Message", "attempt": "one", '
        b'"event": {"fld-val-list": {}, "evt-tp": "x", "timestamp": "2020-01-01T00:00:00Z"}}',
        b'{"topic": "SCG-Message", "event": {"fld-val-list": [], "evt-tp": "x", "timestamp": "2020-01-01T00:00:00Z"}}',
        b'{"topic": "SCG-Message", "event": {"fld-val-list": {"message_id": 5, "from_address": "+1"}, '
        b'"evt-tp": "mo_message_received", "timestamp": "2020-01-01T00:00:00Z"}}',
        b'{"topic": "SCG-Message", "event": {"fld-val-list": {"message_id": "m"}, '
        b'"evt-tp": "mo_message_received", "timestamp": "2020-01-01T00:00:00Z"}}',
        b'{"topic": "SCG-Message", "event": {"fld-val-list": {"message_id": "m"}, '
        b'"evt-tp": "message_state_change", "timestamp": "2020-01-01T00:00:00Z"}}',
        b"1" * 5000,
        b"[" * 5000 + b"]" * 5000,
        b"\xff\xfe",
    ],
)
async def test_signed_but_unparseable_is_malformed(channel, make_sender, ess_request, body) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MalformedWebhook):
        await channel.parse_webhook(ess_request(body), make_sender())


# --- inbound: authentication --------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_basic_auth_any_username_or_the_configured_one(channel, make_sender, ess_request, fake, consts) -> None:  # type: ignore[no-untyped-def]
    body = fake.encode(fake.mo_event("hi", "+15551230001"))
    anyone = make_sender()
    result = await channel.parse_webhook(ess_request(body, authorization=basic("whoever", consts.secret)), anyone)
    assert len(result.messages) == 1

    named = make_sender({"webhook_username": "syniverse"})
    ok = await channel.parse_webhook(ess_request(body, authorization=basic("syniverse", consts.secret)), named)
    assert len(ok.messages) == 1
    for header in (basic("intruder", consts.secret), basic("syniverse", "wrong-password-000000")):
        with pytest.raises(InvalidSignature):
            await channel.parse_webhook(ess_request(body, authorization=header), named)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        "Token ess-webhook-secret-0123456789",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
        "Digest username=x",
    ],
)
async def test_bad_authorization_is_refused(channel, make_sender, ess_request, fake, header) -> None:  # type: ignore[no-untyped-def]
    body = fake.encode(fake.mo_event("hi", "+15551230001"))
    with pytest.raises(InvalidSignature):
        await channel.parse_webhook(ess_request(body, authorization=header), make_sender())


async def test_missing_authorization_and_empty_secret_are_refused(channel, make_sender, fake) -> None:  # type: ignore[no-untyped-def]
    body = fake.encode(fake.mo_event("hi", "+15551230001"))
    with pytest.raises(InvalidSignature):
        await channel.parse_webhook(WebhookRequest("POST", "u", {}, body), make_sender())
    no_secret = make_sender(secret="")
    for header in ("Bearer ", "Bearer x", basic("u", "")):
        with pytest.raises(InvalidSignature):
            await channel.parse_webhook(WebhookRequest("POST", "u", {"authorization": header}, body), no_secret)


async def test_auth_is_checked_before_the_body(channel, make_sender) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidSignature):
        await channel.parse_webhook(
            WebhookRequest("POST", "u", {"authorization": "Bearer nope"}, b"{not json"), make_sender()
        )


async def test_old_event_timestamps_are_accepted_and_left_to_dedupe(channel, make_sender, ess_request, fake) -> None:  # type: ignore[no-untyped-def]
    # ESS's retry schedule is unpublished; a late retry must not be lost.
    event = fake.mo_event("late", "+15551230001")
    event["event"]["timestamp"] = "2017-11-30T17:17:46.615Z"
    result = await channel.parse_webhook(ess_request(fake.encode(event), age=86400 * 2), make_sender())
    assert len(result.messages) == 1


@HYPO
@given(header=st.text(max_size=80))
def test_arbitrary_authorization_headers_only_match_the_secret(header: str) -> None:
    secret = "ess-webhook-secret-0123456789"
    sender = SenderContext(Sender(account_id="a", channel="scg", address="+15550001111"), "t", secret, "u", _no_claim)
    try:
        check_authorization(header, sender, T0)
    except InvalidSignature as exc:
        assert secret not in str(exc)
    else:
        scheme, _, value = header.strip().partition(" ")
        assert scheme.lower() == "basic"  # no static bearer: ESS has none
        assert base64.b64decode(value.strip()).decode().partition(":")[2] == secret


T0 = 1_700_000_000.0


async def _no_claim(key: str, ttl: float) -> bool:
    return True


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
FIELD_NAMES = st.sampled_from(
    [
        "message_id", "from_address", "to_address", "message_body", "media_urls", "attachment_ids",
        "new_state", "message_request_id", "reason_code", "reason_description", "fragments_count",
        "message_body_truncated", "has_attachment", "mt_price", "company-id",
    ]
)  # fmt: skip


@HYPO
@given(
    evt_tp=st.sampled_from(["mo_message_received", "message_state_change", "message_request_state_change", "other"]),
    fields=st.dictionaries(FIELD_NAMES | st.text(max_size=10), json_values, max_size=8),
    attempt=st.one_of(st.integers(), st.text(max_size=3)),
    id_key=st.sampled_from(["event-id", "event_id"]),
)
async def test_signed_envelopes_with_arbitrary_fields_only_get_rejections(
    channel, make_sender, ess_request, evt_tp, fields, attempt, id_key
) -> None:  # type: ignore[no-untyped-def]
    event = {
        "topic": "SCG-Message",
        "attempt": attempt,
        "event": {"fld-val-list": fields, "evt-tp": evt_tp, "timestamp": "2022-06-17T18:24:48.06Z"},
        id_key: "ev-1",
    }
    try:
        result = await channel.parse_webhook(ess_request(json.dumps(event).encode()), make_sender())
    except WebhookRejected as exc:
        assert isinstance(exc, MalformedWebhook)
        return
    for message in result.messages:
        assert message.provider_message_id == fields["message_id"]
    for report in result.reports:
        assert report.provider_message_id in (fields.get("message_request_id"), fields.get("message_id"))
        assert report.state in ("QUEUED", "SENT", "DELIVERED", "READ", "FAILED")


@HYPO
@given(
    text=st.text(max_size=200),
    contact=st.from_regex(r"\A\+?1[2-9]\d{9}\Z"),
    message_id=st.from_regex(r"\A[A-Za-z0-9_-]{22}\Z"),
)
async def test_generated_mo_events_round_trip(
    channel, make_sender, ess_request, fake, text, contact, message_id
) -> None:  # type: ignore[no-untyped-def]
    body = fake.encode(fake.mo_event(text, contact, message_id=message_id))
    [message] = (await channel.parse_webhook(ess_request(body), make_sender())).messages
    assert message.provider_message_id == message_id
    assert message.contact == "+" + contact.lstrip("+")
    if not text.lstrip().startswith("{"):
        assert message.text == text


@HYPO
@given(body=st.text(max_size=200))
def test_rcs_reply_never_crashes(body: str) -> None:
    parsed = rcs_reply(body)
    assert parsed is None or isinstance(parsed[0], str)


@HYPO
@given(raw=st.text(max_size=40))
def test_normalize_address_is_idempotent(raw: str) -> None:
    once = normalize_address(raw)
    assert normalize_address(once) == once
    if once != raw.strip():  # it was taken for a phone number
        assert once.startswith("+") and once[1:].isdigit()


# --- outbound -----------------------------------------------------------------


async def test_send_posts_a_message_request(channel, make_sender, fake, consts) -> None:  # type: ignore[no-untyped-def]
    message = OutboundMessage(sender_id="s", contact="+15551230002", text="Hello", external_id="order-1")
    result = await channel.send(make_sender(), message)
    record = fake.sent[-1]
    assert result.provider_message_id == record["message_request_id"]
    assert len(result.provider_message_id) == 22
    assert result.fragments_count == 1
    assert record["payload"] == {
        "from": consts.sender_from,
        "to": ["+15551230002"],
        "body": "Hello",
        "external_id": "order-1",
    }
    # without an external id, ours correlates the message
    await channel.send(make_sender(), OutboundMessage(sender_id="s", contact="+15551230002", text="x", id="our-id"))
    assert fake.sent[-1]["external_id"] == "our-id"


async def test_options_become_numbered_text_and_sms_media_links(channel, make_sender, fake) -> None:  # type: ignore[no-untyped-def]
    message = OutboundMessage(
        sender_id="s",
        contact="+15551230002",
        text="How can we help?",
        options=[Option(label="Billing", value="billing"), Option(label="Sales", value="sales")],
        media=[Media(url="https://cdn.example/menu.png")],
    )
    await channel.send(make_sender(), message)
    assert (
        fake.sent[-1]["text"]
        == "How can we help?\n1. Billing\n2. Sales\nReply with a number.\nhttps://cdn.example/menu.png"
    )
    assert "media_urls" not in fake.sent[-1]["payload"]


async def test_mms_and_ott_media_is_native(channel, make_sender, fake) -> None:  # type: ignore[no-untyped-def]
    message = OutboundMessage(sender_id="s", contact="+15551230002", media=[Media(url="https://cdn.example/a.png")])
    result = await channel.send(make_sender({"channel_type": "mms"}), message)
    assert fake.sent[-1]["media_urls"] == ["https://cdn.example/a.png"]
    assert "body" not in fake.sent[-1]["payload"]
    assert result.fragments_count is None


async def test_whatsapp_prefix_and_configured_from(channel, make_sender, fake) -> None:  # type: ignore[no-untyped-def]
    sender = make_sender({"channel_type": "whatsapp", "from": "channel:DJm-vHcnSBKbeK4b2FAOLQ"})
    await channel.send(sender, OutboundMessage(sender_id="s", contact="+447700900123", text="hi"))
    assert fake.sent[-1]["recipients"] == ["wa:+447700900123"]
    assert fake.sent[-1]["from"] == "channel:DJm-vHcnSBKbeK4b2FAOLQ"
    custom = make_sender({"channel_type": "facebook", "address_prefix": "wa:"})
    await channel.send(custom, OutboundMessage(sender_id="s", contact="447700900123", text="hi"))
    assert fake.sent[-1]["recipients"] == ["wa:+447700900123"]
    # an already prefixed contact (as seen in reports) is not prefixed twice
    await channel.send(sender, OutboundMessage(sender_id="s", contact="wa:+447700900123", text="hi"))
    assert fake.sent[-1]["recipients"] == ["wa:+447700900123"]


async def test_sms_is_cut_at_1530_and_fragments_counted(channel, make_sender, fake) -> None:  # type: ignore[no-untyped-def]
    result = await channel.send(make_sender(), OutboundMessage(sender_id="s", contact="+15551230002", text="a" * 2000))
    assert len(fake.sent[-1]["text"]) == 1530
    assert result.fragments_count == 10
    result = await channel.send(make_sender(), OutboundMessage(sender_id="s", contact="+15551230002", text="é€" * 40))
    assert result.fragments_count == 1
    result = await channel.send(make_sender(), OutboundMessage(sender_id="s", contact="+15551230002", text="😀" * 40))
    assert result.fragments_count == 2  # UCS-2: 80 units > 70
    limited = make_sender({"max_text_length": 20})
    await channel.send(limited, OutboundMessage(sender_id="s", contact="+15551230002", text="b" * 50))
    assert fake.sent[-1]["text"] == "b" * 20


async def test_empty_message_is_not_sent(channel, make_sender, fake) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SendError) as caught:
        await channel.send(make_sender(), OutboundMessage(sender_id="s", contact="+15551230002"))
    assert not caught.value.retryable
    assert fake.sent == []


async def test_unknown_token_is_credentials_invalid(channel, make_sender, fake) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CredentialsInvalid) as caught:
        await channel.send(
            make_sender(credentials="unknown-token-123"),
            OutboundMessage(sender_id="s", contact="+15551230002", text="x"),
        )
    assert caught.value.status_code == 401
    assert "unknown-token-123" not in str(caught.value)


async def test_expired_token_404_4046_is_credentials_invalid(channel, make_sender, consts) -> None:  # type: ignore[no-untyped-def]
    sender = make_sender(credentials=json.dumps({"token": consts.expired_token}))
    with pytest.raises(CredentialsInvalid) as caught:
        await channel.send(sender, OutboundMessage(sender_id="s", contact="+15551230002", text="x"))
    assert caught.value.status_code == 404
    assert "expired" in str(caught.value)
    assert consts.expired_token not in str(caught.value)


async def test_other_404_is_a_plain_send_error(channel, make_sender, fake) -> None:  # type: ignore[no-untyped-def]
    fake.failures.append((404, "4045", None))
    with pytest.raises(SendError) as caught:
        await channel.send(make_sender(), OutboundMessage(sender_id="s", contact="+15551230002", text="x"))
    assert not isinstance(caught.value, CredentialsInvalid)
    assert not caught.value.retryable


async def test_bad_request_is_not_retried(channel, make_sender, fake) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SendError) as caught:
        await channel.send(make_sender(), OutboundMessage(sender_id="s", contact="not-a-number", text="x"))
    assert caught.value.status_code == 400
    assert "SCG_ERROR_40024" in str(caught.value)
    assert not caught.value.retryable
    assert len([r for r in fake.requests_seen if r["method"] == "POST"]) == 1


async def test_429_is_retried_5xx_is_never_resent_blindly(channel, make_sender, fake) -> None:  # type: ignore[no-untyped-def]
    fake.failures += [(429, "4290", "0"), (429, "4290", "0")]
    result = await channel.send(make_sender(), OutboundMessage(sender_id="s", contact="+15551230002", text="x"))
    assert result.provider_message_id == fake.sent[-1]["id"]
    assert len(fake.requests_seen) == 3
    # A 5xx may come after SCG accepted the request: raised at once, outcome unknown.
    fake.failures.append((503, "5030", None))
    with pytest.raises(SendError) as unknown:
        await channel.send(make_sender(), OutboundMessage(sender_id="s", contact="+15551230002", text="x"))
    assert unknown.value.outcome_unknown and not unknown.value.safe_to_retry
    assert len(fake.requests_seen) == 4

    fake.failures += [(429, "4290", "0")] * 3
    with pytest.raises(SendError) as caught:
        await channel.send(make_sender(), OutboundMessage(sender_id="s", contact="+15551230002", text="x"))
    assert caught.value.retryable
    assert caught.value.status_code == 429
    assert len(fake.sent) == 1


async def test_retry_after_is_honoured(fake, http, make_sender) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    channel = ScgChannel(http, clock)
    channel.retry_policy = RetryPolicy(attempts=2, base=0.0, cap=30.0)
    fake.failures.append((429, "4290", "7"))
    results = []

    async def send() -> None:
        results.append(
            await channel.send(make_sender(), OutboundMessage(sender_id="s", contact="+15551230002", text="x"))
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(send)
        for _ in range(5000):  # until the send sleeps on the fake clock
            if clock.sleepers:
                break
            await anyio.sleep(0.001)
        assert clock.sleepers == 1
        clock.advance(6.9)
        await anyio.sleep(0.01)
        assert results == []
        clock.advance(0.2)
    assert len(results) == 1


async def test_answer_without_id_is_a_final_error(make_sender) -> None:  # type: ignore[no-untyped-def]
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"unexpected": True})

    channel = ScgChannel(httpx.AsyncClient(transport=httpx.MockTransport(handler)), FakeClock())
    with pytest.raises(SendError) as caught:
        await channel.send(make_sender(), OutboundMessage(sender_id="s", contact="+15551230002", text="x"))
    assert not caught.value.retryable


async def test_timeouts_are_not_resent_blindly(make_sender) -> None:  # type: ignore[no-untyped-def]
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("slow", request=request)

    channel = ScgChannel(httpx.AsyncClient(transport=httpx.MockTransport(handler)), FakeClock())
    channel.retry_policy = RetryPolicy(attempts=2, base=0.0, cap=0.0)
    with pytest.raises(SendError) as caught:
        await channel.send(make_sender(), OutboundMessage(sender_id="s", contact="+15551230002", text="x"))
    assert caught.value.retryable and caught.value.outcome_unknown
    assert len(calls) == 1  # the body left: SCG may have sent it


async def test_find_sent_looks_the_message_up_by_external_id(channel, make_sender, fake) -> None:  # type: ignore[no-untyped-def]
    assert channel.finds_sent
    at = datetime.fromtimestamp(T0, UTC)
    message = OutboundMessage(sender_id="s", contact="+15551230002", text="x", created_at=at)
    fake.lost_answers = 1  # SCG accepts the request, the answer is lost
    with pytest.raises(SendError) as caught:
        await channel.send(make_sender(), message)
    assert caught.value.outcome_unknown
    found = await channel.find_sent(make_sender(), message)
    assert found is not None and found.provider_message_id == fake.sent[-1]["message_request_id"]
    assert len(fake.sent) == 1
    # Never sent: nothing found, core may send it.
    assert (
        await channel.find_sent(make_sender(), OutboundMessage(sender_id="s", contact="+1555", created_at=at)) is None
    )
    # A caller's external_id reused: an earlier message, or one to someone else, is not this one.
    reused = OutboundMessage(sender_id="s", contact="+15551230003", text="y", external_id="order-7", created_at=at)
    await channel.send(make_sender(), reused.model_copy(update={"contact": "+15551230004"}))
    assert await channel.find_sent(make_sender(), reused) is None
    later = reused.model_copy(update={"contact": "+15551230004", "created_at": datetime.fromtimestamp(T0 + 3600, UTC)})
    assert await channel.find_sent(make_sender(), later) is None
    same = reused.model_copy(update={"contact": "+15551230004"})
    assert await channel.find_sent(make_sender(), same) is not None
    # Our own id needs no date: whatever SCG's clock says, the message is found.
    ours = OutboundMessage(sender_id="s", contact="+15551230005", text="z", created_at=datetime.now(UTC))
    await channel.send(make_sender(), ours)
    assert await channel.find_sent(make_sender(), ours) is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_700_000_000_000, 1_700_000_000.0),
        ("1700000000000", 1_700_000_000.0),
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14T22:13:20", 1_700_000_000.0),
        (1_700_000_000, None),  # seconds, not milliseconds: unreadable rather than 1970
        ("soon", None),
        (None, None),
        (True, None),
    ],
)
def test_scg_dates_read_leniently(value: Any, expected: float | None) -> None:
    assert _epoch(value) == expected


@HYPO
@given(
    text=st.text(max_size=3000),
    labels=st.lists(st.text(min_size=1, max_size=20), max_size=4),
    kind=st.sampled_from(["sms", "mms", "rcs", "whatsapp"]),
)
def test_request_bodies_respect_the_limits(channel, make_sender, text, labels, kind) -> None:  # type: ignore[no-untyped-def]
    sender = make_sender({"channel_type": kind})
    message = OutboundMessage(
        sender_id="s", contact="+15551230002", text=text, options=[Option(label=x, value=x) for x in labels]
    )
    body = channel.request_body(sender, message)
    assert len(body.get("body", "")) <= channel.capabilities(sender).max_text_length
    assert body["to"] == [("wa:" if kind == "whatsapp" else "") + "+15551230002"]
    for number, label in enumerate(labels, start=1):
        if len(text) + 200 < channel.capabilities(sender).max_text_length:
            assert f"{number}. {label}" in body["body"]


# --- real loopback HTTP -----------------------------------------------------------


@pytest.fixture
def loopback_fake(fake: FakeScg) -> Iterator[str]:
    with serve_app(fake.app) as url:
        yield url


async def test_send_over_loopback_http(loopback_fake: str, fake: FakeScg, make_sender, consts) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient() as http:
        channel = ScgChannel(http, FakeClock())
        sender = make_sender({"base_url": loopback_fake + "/"})
        result = await channel.send(
            sender, OutboundMessage(sender_id="s", contact="+15551230002", text="over the wire")
        )
        assert fake.requests_seen[-1]["authorization"] == f"Bearer {consts.token}"
        assert fake.sent[-1]["payload"]["body"] == "over the wire"
        assert fake.sent[-1]["recipients"] == ["+15551230002"]
        # the fake's state is readable over the same API
        response = await http.get(
            f"{loopback_fake}/scg-external-api/api/v1/messaging/message_requests/{result.provider_message_id}",
            headers={"authorization": f"Bearer {consts.token}"},
        )
        assert response.status_code == 200
        assert response.json()["to"] == ["+15551230002"]


# --- configuration and provisioning ---------------------------------------------------


FROM = {"from": "channel:DJm-vHcnSBKbeK4b2FAOLQ"}


def validate(
    channel: ScgChannel,
    credentials: str = "scg-test-token-0001",
    secret: str = "s" * 20,
    address: str = "+15550001111",
    **config: Any,
) -> dict[str, Any]:
    return channel.validate_sender(address, credentials, secret, {**FROM, **config})


def test_valid_senders(channel: ScgChannel) -> None:
    assert validate(channel) == FROM
    assert validate(
        channel,
        credentials='{"token": "scg-test-token-0001"}',
        channel_type="rcs",
        **{"from": "sender_id:Fy4db1bd4RE9A665JjY4v6"},
    )
    assert validate(channel, provision=True) == {**FROM, "provision": True}
    assert validate(channel, address_prefix="", webhook_username="syniverse", max_text_length=160)
    assert validate(channel, webhook_auth="oauth2", oauth_client_id="ess-client")


def test_from_is_channel_or_sender_id_never_a_bare_address(channel: ScgChannel) -> None:
    # SCG expects `channel:<id>` / `sender_id:<id>`; a bare address is ambiguous (40019) or unknown (40018).
    with pytest.raises(ConfigInvalid) as caught:
        channel.validate_sender("+15550001111", "scg-test-token-0001", "s" * 20, {})
    assert caught.value.field == "config.from"
    # An address that is itself an SCG sender id needs no `from`.
    assert channel.validate_sender("Fy4db1bd4RE9A665JjY4v6", "scg-test-token-0001", "s" * 20, {}) == {}
    assert sender_from("Fy4db1bd4RE9A665JjY4v6", {}) == "sender_id:Fy4db1bd4RE9A665JjY4v6"
    assert sender_from("+15550001111", {}) is None


async def test_a_stored_sender_without_from_is_not_sent_bare(channel, make_sender, fake) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SendError) as caught:
        await channel.send(
            make_sender({"from": None}), OutboundMessage(sender_id="s", contact="+15551230002", text="x")
        )
    assert "config.from" in str(caught.value) and not caught.value.retryable
    assert fake.sent == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"credentials": ""}, "credentials.token"),
        ({"credentials": "{}"}, "credentials.token"),
        ({"credentials": '{"token": ""}'}, "credentials.token"),
        ({"credentials": "{oops"}, "credentials"),
        ({"credentials": "has spaces in it"}, "credentials.token"),
        ({"secret": ""}, "webhook_secret"),
        ({"secret": "", "provision": True}, "webhook_secret"),
        ({"secret": "short"}, "webhook_secret"),
        ({"from": "+15550001111"}, "config.from"),
        ({"from": "channel:has space"}, "config.from"),
        ({"channel_type": "telegram"}, "config.channel_type"),
        ({"base_url": "ftp://x"}, "config.base_url"),
        ({"address_prefix": "WA"}, "config.address_prefix"),
        ({"max_text_length": 0}, "config.max_text_length"),
        ({"max_text_length": True}, "config.max_text_length"),
        ({"webhook_username": "a:b"}, "config.webhook_username"),
        ({"webhook_auth": "bearer"}, "config.webhook_auth"),
        ({"oauth_client_id": "a b"}, "config.oauth_client_id"),
        ({"provision": "yes"}, "config.provision"),
        ({"regoin": "us"}, "config.regoin"),
    ],
)
def test_invalid_senders_name_the_field(channel: ScgChannel, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        validate(channel, **kwargs)
    assert caught.value.field == field
    assert "scg-test-token" not in str(caught.value)


def test_capabilities_follow_the_channel_type(channel: ScgChannel, make_sender: Callable[..., SenderContext]) -> None:
    sms = channel.capabilities(make_sender())
    assert (sms.sms, sms.media, sms.options, sms.max_text_length) == (True, False, False, 1530)
    mms = channel.capabilities(make_sender({"channel_type": "mms"}))
    assert (mms.sms, mms.media) == (False, True)
    assert channel.capabilities(make_sender({"max_text_length": 300})).max_text_length == 300


async def test_provision_describes_the_delivery_configuration(channel, make_sender) -> None:  # type: ignore[no-untyped-def]
    sender = make_sender()
    result = await channel.provision(sender)
    assert result.state == "active"
    assert result.webhook_secret is None  # the operator's own secret is kept
    description = result.config["ess_delivery_configuration"]
    assert description["addr"] == sender.webhook_url
    assert (description["del-prtcl-cd"], description["del-fmt-cd"], description["topic"]) == (
        "REST",
        "JSON",
        "SCG-Message",
    )
    assert description["evt-tp"] == ["mo_message_received", "message_state_change", "message_request_state_change"]
    # Basic is the default: ESS offers no static bearer (KB "ESS good practices").
    assert description["auth"] == {"type": "BASIC", "username": "syniverse", "password": "<webhook_secret>"}
    assert sender.webhook_secret not in json.dumps(result.config)

    named = await channel.provision(make_sender({"webhook_username": "ess-user"}))
    auth = named.config["ess_delivery_configuration"]["auth"]
    assert auth == {"type": "BASIC", "username": "ess-user", "password": "<webhook_secret>"}

    oauth_sender = make_sender({"webhook_auth": "oauth2", "oauth_client_id": "ess-client"})
    oauth = (await channel.provision(oauth_sender)).config["ess_delivery_configuration"]["auth"]
    assert oauth == {
        "type": "OAUTH2",
        "grant_type": "client_credentials",
        "token_url": oauth_sender.webhook_url + "/oauth/token",
        "client_id": "ess-client",
        "client_secret": "<webhook_secret>",
    }
    assert await channel.deprovision(sender) is None


async def test_event_model_of_core_reads_what_the_fake_emits(fake: FakeScg) -> None:
    event = Event.model_validate_payload(fake.mo_event("hi", "+15551230001"))
    assert event.type == "mo_message_received"
    assert event.payload()["event"]["fld-val-list"]["message_body"] == "hi"


async def test_captions_of_native_media_are_kept(channel, make_sender, fake) -> None:  # type: ignore[no-untyped-def]
    # SCG has no caption field: on MMS/OTT the caption goes into the body beside media_urls.
    for kind in ("mms", "whatsapp"):
        message = OutboundMessage(
            sender_id="s",
            contact="+15551230002",
            text="Your ticket",
            media=[Media(url="https://cdn.example/t.png", caption="Gate 12"), Media(url="https://cdn.example/u.png")],
        )
        await channel.send(make_sender({"channel_type": kind}), message)
        payload = fake.sent[-1]["payload"]
        assert payload["body"] == "Your ticket\nGate 12"
        assert payload["media_urls"] == ["https://cdn.example/t.png", "https://cdn.example/u.png"]
    only_caption = OutboundMessage(
        sender_id="s", contact="+15551230002", media=[Media(url="https://cdn.example/t.png", caption="Gate 12")]
    )
    await channel.send(make_sender({"channel_type": "mms"}), only_caption)
    assert fake.sent[-1]["payload"]["body"] == "Gate 12"


async def test_whatsapp_report_contact_matches_the_inbound_contact(channel, make_sender, ess_request, fake) -> None:  # type: ignore[no-untyped-def]
    sender = make_sender({"channel_type": "whatsapp"})
    [inbound] = (
        await channel.parse_webhook(ess_request(fake.encode(fake.mo_event("hi", "wa:+447700900123"))), sender)
    ).messages
    sent = await channel.send(sender, OutboundMessage(sender_id="s", contact=inbound.contact, text="hello"))
    assert fake.sent[-1]["recipients"] == ["wa:+447700900123"]
    event = fake.state_event(sent.provider_message_id, "DELIVERED")
    assert "@" in event["event"]["fld-val-list"]["to_address"]
    [report] = (await channel.parse_webhook(ess_request(fake.encode(event)), sender)).reports
    assert report.contact == inbound.contact == "+447700900123"
    # What is not a phone number behind the prefix stays as it was.
    assert normalize_address("a:0") == "a:0" and normalize_address("wa:abc@1") == "wa:abc@1"
