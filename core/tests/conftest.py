from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field

from botbridge import (
    BotBackend,
    BotSession,
    Channel,
    ConfigInvalid,
    InboundMessage,
    Reply,
    SenderContext,
    SendResult,
    WebhookRequest,
    WebhookResult,
    hookimpl,
)
from botbridge.channel import parse_payload
from botbridge.clock import FakeClock
from botbridge.host import create_app
from botbridge.models import Media, OutboundMessage
from botbridge.plugins import Plugins
from botbridge.settings import Settings
from botbridge.signing import hmac_digest, verify_digest
from botbridge.stores import memory
from botbridge.testing import api_client

KEY_A = "key-for-account-a"
KEY_B = "key-for-account-b"


class LoopPayload(BaseModel):
    id: str
    from_: str = Field(alias="from")
    text: str = ""
    media: list[Media] = Field(default_factory=list)


class LoopChannel(Channel):
    """A minimal channel for core tests: HMAC-hex over the body, JSON messages."""

    name = "loop"

    def validate_sender(self, address, credentials, webhook_secret, config):  # type: ignore[no-untyped-def]
        config = super().validate_sender(address, credentials, webhook_secret, config)
        if "region" in config and config["region"] not in ("us", "eu"):
            raise ConfigInvalid("region", "must be us or eu")
        return config

    async def parse_webhook(self, request: WebhookRequest, sender: SenderContext) -> WebhookResult:
        verify_digest(
            request.headers.get("x-signature"), hmac_digest(sender.webhook_secret, request.body), encoding="hex"
        )
        data = parse_payload(LoopPayload, request.json_object())
        return WebhookResult(
            messages=[
                InboundMessage(
                    channel=self.name,
                    sender_id=sender.id,
                    provider_message_id=data.id,
                    contact=data.from_,
                    text=data.text,
                    media=data.media,
                )
            ]
        )

    async def send(self, sender: SenderContext, message: OutboundMessage) -> SendResult:
        return SendResult(provider_message_id="sent-" + message.id)


class EchoBot(BotBackend):
    type = "ECHO"

    def validate_credentials(self, credentials: str, config: dict[str, Any]) -> None:
        try:
            data = json.loads(credentials)
        except ValueError:
            raise ConfigInvalid("credentials", "must be a JSON object") from None
        if not isinstance(data, dict) or not data.get("token"):
            raise ConfigInvalid("token", "is required")

    async def send(self, session: BotSession, message: InboundMessage) -> list[Reply]:
        return [Reply(text=f"echo: {message.text}")]


class TestPlugin:
    @hookimpl
    def register_channels(self, register):  # type: ignore[no-untyped-def]
        register(LoopChannel)

    @hookimpl
    def register_bot_backends(self, register):  # type: ignore[no-untyped-def]
        register(EchoBot)


def make_plugins() -> Plugins:
    plugins = Plugins()
    plugins.add(memory, "memory", builtin=True)
    plugins.add(TestPlugin(), "testplugin")
    plugins.collect()
    return plugins


def sign_loop(secret: str, body: dict[str, Any] | bytes) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw, {"x-signature": hmac_digest(secret, raw).hex(), "content-type": "application/json"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings() -> Settings:
    return Settings(
        store="memory://",
        api_keys=f"acct-a:{KEY_A},acct-b:{KEY_B}",  # type: ignore[arg-type]
        secret_key="test-secret-key-0123456789",  # type: ignore[arg-type]
    )


@pytest.fixture
def app(settings: Settings, clock: FakeClock):  # type: ignore[no-untyped-def]
    return create_app(settings, plugins=make_plugins(), clock=clock)


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with api_client(app, KEY_A) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}
