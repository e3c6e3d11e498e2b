"""Each provider's fake, wrapped the same way for end-to-end tests.

A channel side knows the sender JSON that points its plugin at its fake,
how a phone sends an MO through the fake, and what the fake was asked to
send. A bot side knows the connector JSON for its fake.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from botbridge.signing import verify_standard_webhook


def digits(address: str) -> str:
    return "".join(c for c in str(address) if c.isdigit())


class ChannelSide:
    name: str
    app: Any

    def sender_body(self, base_url: str) -> dict[str, Any]:
        raise NotImplementedError

    async def phone_says(self, webhook_url: str, text: str, contact: str) -> int | None:
        """The status the host answered the provider's last attempt with (None: no answer)."""
        raise NotImplementedError

    def texts_to(self, contact: str) -> list[str]:
        return [str(m["text"]) for m in self.fake.sent if digits(m["to"]) == digits(contact)]  # type: ignore[attr-defined]


class SinchSide(ChannelSide):
    name = "sinch"

    def __init__(self) -> None:
        from botbridge_sinch.testing import FakeSinch

        self.fake = FakeSinch()
        self.app = self.fake.app

    def sender_body(self, base_url: str) -> dict[str, Any]:
        fake = self.fake
        credentials = {
            "project_id": fake.project_id,
            "app_id": fake.app_id,
            "key_id": fake.key_id,
            "key_secret": fake.key_secret,
        }
        return {
            "channel": "sinch",
            "address": "+46700000000",
            "credentials": json.dumps(credentials),
            "webhook_secret": fake.webhook_secret,
            "config": {"base_url": base_url, "auth_url": base_url, "channel": "SMS"},
        }

    async def phone_says(self, webhook_url: str, text: str, contact: str) -> int | None:
        body = self.fake.inbound_body(text, digits(contact), None)
        responses = await self.fake.deliver(webhook_url, body)
        return responses[-1].status_code if responses else None


class BirdSide(ChannelSide):
    name = "bird"
    access_key = "bird-e2e-access-key"
    signing_key = "bird-e2e-signing-key-0001"

    def __init__(self) -> None:
        from botbridge_bird.testing import BirdFake

        self.fake = BirdFake(access_key=self.access_key)
        self.channel_id = self.fake.add_channel("sms", "+3197010250000")
        self.app = self.fake.app

    def sender_body(self, base_url: str) -> dict[str, Any]:
        return {
            "channel": "bird",
            "address": "+3197010250000",
            "credentials": self.access_key,
            "webhook_secret": self.signing_key,
            "config": {"workspace_id": self.fake.workspace_id, "channel_id": self.channel_id, "base_url": base_url},
        }

    async def phone_says(self, webhook_url: str, text: str, contact: str) -> int | None:
        async with httpx.AsyncClient() as http:
            emission = await self.fake.emit_inbound(
                webhook_url,
                text=text,
                contact=contact,
                signing_key=self.signing_key,
                channel_id=self.channel_id,
                http=http,
            )
        return emission.status_codes[-1] if emission.status_codes else None


class ScgSide(ChannelSide):
    name = "scg"
    token = "scg-test-token-0001"
    secret = "scg-e2e-delivery-secret"

    def __init__(self) -> None:
        from botbridge_scg.testing import FakeScg

        self.fake = FakeScg()
        self.app = self.fake.app

    def sender_body(self, base_url: str) -> dict[str, Any]:
        return {
            "channel": "scg",
            "address": "66000",
            "credentials": self.token,
            "webhook_secret": self.secret,
            "config": {"base_url": base_url, "from": "channel:e2eChannel01"},
        }

    async def phone_says(self, webhook_url: str, text: str, contact: str) -> httpx.Response | int:
        from botbridge_scg.testing import EssAuth

        deliveries = await self.fake.emit_inbound(
            webhook_url, text=text, contact=contact, auth=EssAuth.bearer(self.secret)
        )
        return deliveries[-1].status


class BotSide:
    type: str
    app: Any

    def connector_body(self, sender_id: str, base_url: str) -> dict[str, Any]:
        raise NotImplementedError

    def echo(self, text: str) -> str:
        return f"echo: {text}"


class DirectLineSide(BotSide):
    type = "AZURE_BOT_DIRECT_LINE"

    def __init__(self) -> None:
        from botbridge_azure_directline.testing import FakeDirectLine

        self.fake = FakeDirectLine()
        self.app = self.fake.app

    def connector_body(self, sender_id: str, base_url: str) -> dict[str, Any]:
        return {
            "type": self.type,
            "sender_id": sender_id,
            "credentials": self.fake.secret,
            "config": {"base_url": base_url},
        }

    def sessions(self) -> set[str]:
        return set(self.fake.conversations)


class LexSide(BotSide):
    type = "AMAZON_LEX"

    def __init__(self) -> None:
        from botbridge_lex.testing import FakeLex

        self.fake = FakeLex()
        self.app = self.fake.app

    def connector_body(self, sender_id: str, base_url: str) -> dict[str, Any]:
        from botbridge_lex.testing import ACCESS_KEY_ID, REGION, SECRET_KEY, V2_BOT

        credentials = {"accessKeyId": ACCESS_KEY_ID, "secretKey": SECRET_KEY, "region": REGION, "bot": V2_BOT}
        return {
            "type": self.type,
            "sender_id": sender_id,
            "credentials": json.dumps(credentials),
            "config": {"base_url": base_url},
        }

    def sessions(self) -> set[str]:
        return set(self.fake.sessions)


class DialogflowSide(BotSide):
    type = "GOOGLE_DIALOG_FLOW"

    def __init__(self) -> None:
        from botbridge_dialogflow.testing import FakeDialogflow, service_account_info

        self.fake = FakeDialogflow()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.info = service_account_info(key)
        self.fake.register(self.info)
        self.app = self.fake.app

    def connector_body(self, sender_id: str, base_url: str) -> dict[str, Any]:
        return {
            "type": self.type,
            "sender_id": sender_id,
            "credentials": json.dumps(self.info),
            "config": {"base_url": base_url, "token_url": base_url + "/token"},
        }

    def sessions(self) -> set[str]:
        return {call.session_id for call in self.fake.calls}


CHANNELS = {"sinch": SinchSide, "bird": BirdSide, "scg": ScgSide}
BOTS = {"AZURE_BOT_DIRECT_LINE": DirectLineSide, "AMAZON_LEX": LexSide, "GOOGLE_DIALOG_FLOW": DialogflowSide}


class Subscriber:
    """A customer's event webhook: verifies the Standard Webhooks signature, keeps the events."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.events: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/events", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        verify_standard_webhook(self.secret, request.headers, body, now=time.time())
        self.events.append(json.loads(body))
        return Response(status_code=204)

    def of(self, evt_tp: str, sender_id: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["event"]["evt-tp"] == evt_tp
            and (sender_id is None or e["event"]["fld-val-list"]["sender_id_id"] == sender_id)
        ]
