"""The channel contract: what every `botbridge.Channel` must do.

A plugin's test subclasses `ChannelContract` and provides a `harness`
fixture yielding a `ChannelHarness`: the channel wired (through its HTTP
client) to the plugin's strict fake, a sender, and ways to build webhooks
the way the provider builds them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botbridge.channel import Channel, SenderContext, WebhookRequest
from botbridge.errors import InvalidSignature, MalformedWebhook, WebhookRejected
from botbridge.models import OutboundMessage


@dataclass
class ChannelHarness:
    channel: Channel
    sender: SenderContext
    # sign(body, secret=None, age=0.0): a request signed as the provider signs
    # `body` (with `secret` instead of the sender's, `age` seconds in the past).
    sign: Callable[..., WebhookRequest]
    # inbound_body(text, contact, message_id) -> bytes of a provider MO webhook
    inbound_body: Callable[[str, str, str], bytes]
    # report_body(provider_message_id, state) -> bytes of a provider delivery
    # report; state is botbridge's (SENT, DELIVERED, READ, FAILED)
    report_body: Callable[[str, str], bytes]
    # messages the fake provider accepted from `send`, newest last, as dicts
    # with at least "to" and "text"
    sent: Callable[[], list[dict[str, Any]]]
    # does the provider put a timestamp under its signature (replay window)?
    signs_timestamp: bool = True
    # does the signature cover the body? (SCG's ESS authenticates with a
    # bearer or basic secret instead: a changed body cannot be detected)
    signs_body: bool = True
    # age, in seconds, that the provider's replay window must refuse
    stale_age: float = 3600.0
    # report states the provider can express
    report_states: tuple[str, ...] = ("DELIVERED", "FAILED")
    # extra async check after a send (e.g. the fake saw the right auth)
    after_send: Callable[[dict[str, Any]], Awaitable[None]] | None = None


@pytest.mark.anyio
class ChannelContract:
    """Subclass and provide a `harness` fixture returning a ChannelHarness."""

    async def test_signed_inbound_is_parsed(self, harness: ChannelHarness) -> None:
        body = harness.inbound_body("Hello there", "+15551230001", "mo-1")
        result = await harness.channel.parse_webhook(harness.sign(body), harness.sender)
        assert len(result.messages) == 1
        message = result.messages[0]
        assert message.text == "Hello there"
        assert message.provider_message_id == "mo-1"
        assert message.sender_id == harness.sender.id
        assert message.channel == harness.channel.name
        assert message.contact.lstrip("+") == "15551230001"

    async def test_one_changed_byte_is_refused(self, harness: ChannelHarness) -> None:
        if not harness.signs_body:
            pytest.skip("the provider signs no body")
        body = harness.inbound_body("Hello there", "+15551230001", "mo-2")
        good = harness.sign(body)
        tampered = body.replace(b"Hello", b"Jello")
        assert tampered != body
        forged = WebhookRequest(good.method, good.url, good.headers, tampered, good.query)
        with pytest.raises(InvalidSignature):
            await harness.channel.parse_webhook(forged, harness.sender)

    async def test_wrong_secret_is_refused(self, harness: ChannelHarness) -> None:
        body = harness.inbound_body("Hi", "+15551230001", "mo-3")
        with pytest.raises(InvalidSignature):
            await harness.channel.parse_webhook(harness.sign(body, secret="not-the-secret-at-all"), harness.sender)

    async def test_stale_timestamp_is_refused(self, harness: ChannelHarness) -> None:
        if not harness.signs_timestamp:
            pytest.skip("the provider signs no timestamp")
        body = harness.inbound_body("Hi", "+15551230001", "mo-4")
        with pytest.raises(InvalidSignature):
            await harness.channel.parse_webhook(harness.sign(body, age=harness.stale_age), harness.sender)

    async def test_refusal_never_echoes_the_expected_signature(self, harness: ChannelHarness) -> None:
        body = harness.inbound_body("Hi", "+15551230001", "mo-5")
        good = harness.sign(body)
        tampered = harness.sign(body, secret="not-the-secret-at-all")
        if harness.signs_body:
            tampered = WebhookRequest(good.method, good.url, good.headers, body + b" ", good.query)
        with pytest.raises(InvalidSignature) as caught:
            await harness.channel.parse_webhook(tampered, harness.sender)
        for value in good.headers.values():
            if len(value) >= 16:
                assert value not in str(caught.value)
        assert harness.sender.webhook_secret not in str(caught.value)

    async def test_signed_garbage_is_malformed(self, harness: ChannelHarness) -> None:
        for body in (b"{not json", b"[]", b'{"unexpected": true}'):
            with pytest.raises((MalformedWebhook, InvalidSignature)) as caught:
                await harness.channel.parse_webhook(harness.sign(body), harness.sender)
            if body == b"{not json":
                assert isinstance(caught.value, MalformedWebhook)

    async def test_send_reaches_the_fake(self, harness: ChannelHarness) -> None:
        before = len(harness.sent())
        message = OutboundMessage(sender_id=harness.sender.id, contact="+15551230002", text="Your order shipped")
        result = await harness.channel.send(harness.sender, message)
        assert result.provider_message_id
        sent = harness.sent()
        assert len(sent) == before + 1
        assert sent[-1]["text"] == "Your order shipped"
        assert str(sent[-1]["to"]).lstrip("+").endswith("15551230002")
        if harness.after_send is not None:
            await harness.after_send(sent[-1])

    async def test_delivery_reports_are_mapped(self, harness: ChannelHarness) -> None:
        message = OutboundMessage(sender_id=harness.sender.id, contact="+15551230003", text="ping")
        sent = await harness.channel.send(harness.sender, message)
        for state in harness.report_states:
            body = harness.report_body(sent.provider_message_id, state)
            result = await harness.channel.parse_webhook(harness.sign(body), harness.sender)
            assert [r.state for r in result.reports] == [state]
            assert result.reports[0].provider_message_id == sent.provider_message_id
            assert result.messages == []

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
        headers=st.dictionaries(st.text(min_size=1, max_size=30).map(str.lower), st.text(max_size=80), max_size=5),
    )
    async def test_arbitrary_requests_only_get_rejections(
        self, harness: ChannelHarness, body: bytes, headers: dict[str, str]
    ) -> None:
        request = WebhookRequest("POST", harness.sender.webhook_url, headers, body)
        try:
            await harness.channel.parse_webhook(request, harness.sender)
        except WebhookRejected as exc:
            assert 400 <= exc.status_code < 500

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        body=st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
            max_leaves=20,
        )
    )
    async def test_signed_arbitrary_json_only_gets_rejections(self, harness: ChannelHarness, body: Any) -> None:
        import json

        request = harness.sign(json.dumps(body).encode())
        try:
            await harness.channel.parse_webhook(request, harness.sender)
        except WebhookRejected as exc:
            assert 400 <= exc.status_code < 500
