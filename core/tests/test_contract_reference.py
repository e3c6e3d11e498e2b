"""The contracts run against core's reference channel, the way a plugin runs them."""

from __future__ import annotations

import pytest

from botbridge.channel import SenderContext, WebhookRequest, WebhookResult
from botbridge.clock import FakeClock
from botbridge.models import Sender
from botbridge.testing import ChannelContract, ChannelHarness

from .conftest import LoopChannel, sign_loop


class RecordingLoopChannel(LoopChannel):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.outbox: list[dict[str, str]] = []

    async def send(self, sender, message):  # type: ignore[no-untyped-def]
        self.outbox.append({"to": message.contact, "text": message.text})
        return await super().send(sender, message)

    async def parse_webhook(self, request, sender):  # type: ignore[no-untyped-def]
        data = request.json_object()
        if "status" in data:
            await super().parse_webhook(request, sender)  # verifies the signature
            from botbridge.models import DeliveryReport

            return WebhookResult(
                reports=[
                    DeliveryReport(
                        channel=self.name, sender_id=sender.id, provider_message_id=data["id"], state=data["status"]
                    )
                ]
            )
        return await super().parse_webhook(request, sender)


class TestLoopChannelContract(ChannelContract):
    @pytest.fixture
    def harness(self) -> ChannelHarness:
        import httpx

        channel = RecordingLoopChannel(httpx.AsyncClient(), FakeClock())

        async def claim(key: str, ttl: float) -> bool:
            return True

        sender = SenderContext(
            sender=Sender(account_id="a", channel="loop", address="+1555"),
            credentials="",
            webhook_secret="loop-secret-value",
            webhook_url="http://host/v1/webhooks/loop/x",
            claim=claim,
        )

        def sign(body: bytes, secret: str | None = None, age: float = 0.0) -> WebhookRequest:
            raw, headers = sign_loop(secret or sender.webhook_secret, body)
            return WebhookRequest("POST", sender.webhook_url, headers, raw)

        return ChannelHarness(
            channel=channel,
            sender=sender,
            sign=sign,
            inbound_body=lambda text, contact, mid: (
                b'{"id": "%s", "from": "%s", "text": "%s"}' % (mid.encode(), contact.encode(), text.encode())
            ),
            report_body=lambda pid, state: (
                b'{"id": "%s", "from": "x", "status": "%s"}' % (pid.encode(), state.encode())
            ),
            sent=lambda: channel.outbox,
            signs_timestamp=False,
        )
