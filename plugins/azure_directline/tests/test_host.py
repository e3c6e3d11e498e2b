"""The backend through the real host: discovery, the connector API, one turn."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from botbridge import Channel, Conversation, SenderContext, SendResult, WebhookRequest, WebhookResult, hookimpl
from botbridge.clock import FakeClock
from botbridge.host import create_app
from botbridge.models import OutboundMessage
from botbridge.plugins import Plugins
from botbridge.settings import Settings
from botbridge.stores import memory
from botbridge.testing import api_client
from botbridge.testing.bots import inbound
from botbridge_azure_directline import plugin as directline_plugin
from botbridge_azure_directline.testing import FAKE_BASE_URL, FakeDirectLine

pytestmark = pytest.mark.anyio

API_KEY = "key-123456"
SEED_SECRET = "ZrVkDm7_F24.cwA.BEs.Sz0w9A3HT1jhIo67glktyW4wz73y6J_Hd810FP6eFTpQ"


class NullChannel(Channel):
    """Just enough of a channel to own a sender."""

    name = "nullchan"
    requires_webhook_secret = False

    async def parse_webhook(self, request: WebhookRequest, sender: SenderContext) -> WebhookResult:
        return WebhookResult()

    async def send(self, sender: SenderContext, message: OutboundMessage) -> SendResult:
        return SendResult(provider_message_id=message.id)


class ChannelPlugin:
    @hookimpl
    def register_channels(self, register: Any) -> None:
        register(NullChannel)


def make_plugins() -> Plugins:
    plugins = Plugins()
    plugins.add(memory, "memory", builtin=True)
    plugins.add(ChannelPlugin(), "nullchan")
    plugins.add(directline_plugin, "azure_directline")
    plugins.collect()
    return plugins


def test_entry_point_is_discovered() -> None:
    plugins = Plugins.discover(Settings(load_plugins="azure_directline"))  # type: ignore[call-arg]
    info = plugins.infos["azure_directline"]
    assert info.errors == []
    assert info.distribution == "botbridge-azure-directline"
    assert info.connector_types == ["AZURE_BOT_DIRECT_LINE"]
    assert "AZURE_BOT_DIRECT_LINE" in plugins.bot_backends


async def test_connector_api_and_one_turn_through_the_host() -> None:
    clock = FakeClock()
    fake = FakeDirectLine(secret=SEED_SECRET, clock=clock)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app))
    settings = Settings(store="memory://", api_keys="acct:key-123456", secret_key="x" * 32)  # type: ignore[arg-type]
    app = create_app(settings, plugins=make_plugins(), http=http, clock=clock)
    async with api_client(app, API_KEY) as client:
        listed = (await client.get("/v1/plugins")).json()["plugins"]
        assert next(p for p in listed if p["name"] == "azure_directline")["connector_types"] == [
            "AZURE_BOT_DIRECT_LINE"
        ]
        sender = await client.post("/v1/senders", json={"channel": "nullchan", "address": "12345"})
        assert sender.status_code == 201, sender.text
        sender_id = sender.json()["id"]

        base = {"type": "AZURE_BOT_DIRECT_LINE", "sender_id": sender_id}
        bad = await client.post("/v1/connectors", json={**base, "credentials": "not a secret"})
        assert bad.status_code == 422
        assert bad.json()["error"]["details"][0]["field"] == "credentials"
        assert "not a secret" not in bad.text
        bad_url = await client.post(
            "/v1/connectors", json={**base, "credentials": SEED_SECRET, "config": {"base_url": "ftp://x"}}
        )
        assert bad_url.status_code == 422
        assert bad_url.json()["error"]["details"][0]["field"] == "config.base_url"

        created = await client.post(
            "/v1/connectors",
            json={**base, "credentials": SEED_SECRET, "external_id": "Test123", "config": {"base_url": FAKE_BASE_URL}},
        )
        assert created.status_code == 201, created.text
        assert SEED_SECRET not in created.text

        rt = app.state.runtime
        connector = await rt.store.get_connector(created.json()["id"])
        bot = rt.bot("AZURE_BOT_DIRECT_LINE")
        now = clock.now()
        conversation = Conversation(
            sender_id=sender_id, contact="+15551234567", connector_id=connector.id, opened_at=now, last_mo_at=now
        )
        session = rt.bot_session(connector, conversation)
        await bot.open(session)
        replies = await bot.send(session, inbound(session, "hello host"))
        assert [r.text for r in replies] == ["echo: hello host"]
        assert bot.polling(session.state["conversation_id"])
    # the host's shutdown closed the backend: no poller is left behind
    assert not bot.polling(session.state["conversation_id"])


def test_public_exports() -> None:
    import botbridge_azure_directline as package

    assert sorted(package.__all__) == [
        "CONNECTOR_TYPE",
        "DEFAULT_BASE_URL",
        "DirectLineBot",
        "activity_replies",
        "activity_reply",
        "bot_replies",
        "derive_user_id",
    ]
    assert all(hasattr(package, name) for name in package.__all__)
    assert package.DirectLineBot.type == package.CONNECTOR_TYPE == "AZURE_BOT_DIRECT_LINE"
