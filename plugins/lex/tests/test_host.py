"""The backend through the real host: discovery, the connector API, one turn via the runtime."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from botbridge import Channel, Conversation, FakeClock, hookimpl
from botbridge.host import create_app
from botbridge.plugins import Plugins
from botbridge.settings import Settings
from botbridge.stores import memory
from botbridge.testing import api_client
from botbridge_lex import plugin as lex_plugin
from botbridge_lex.testing import FAKE_BASE_URL, SECRET_KEY, FakeLex, fake_credentials

from .test_bot import SEED_CREDENTIALS, mo

pytestmark = pytest.mark.anyio

API_KEY = "key-123456"


class NullChannel(Channel):
    """Just enough of a channel to own a sender."""

    name = "null"


class NullChannelPlugin:
    @hookimpl
    def register_channels(self, register: Any) -> None:
        register(NullChannel)


def make_plugins() -> Plugins:
    plugins = Plugins()
    plugins.add(memory, "memory", builtin=True)
    plugins.add(lex_plugin, "lex")
    plugins.add(NullChannelPlugin(), "null")
    plugins.collect()
    return plugins


def test_entry_point_is_discovered() -> None:
    plugins = Plugins.discover(Settings(store="memory://", load_plugins="lex"))
    info = plugins.infos["lex"]
    assert info.errors == []
    assert info.distribution == "botbridge-lex"
    assert info.connector_types == ["AMAZON_LEX"]
    assert info.kinds == ["bot"]
    assert plugins.bot_backends["AMAZON_LEX"].__module__ == "botbridge_lex.bot"


async def test_connector_api_and_a_turn(fake: FakeLex, clock: FakeClock) -> None:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app))
    settings = Settings(store="memory://", api_keys=f"acct:{API_KEY}", secret_key="x" * 32)  # type: ignore[arg-type]
    app = create_app(settings, plugins=make_plugins(), http=http, clock=clock)
    async with api_client(app, API_KEY) as client:
        listed = (await client.get("/v1/plugins")).json()["plugins"]
        assert [p["connector_types"] for p in listed if p["name"] == "lex"] == [["AMAZON_LEX"]]

        sender = await client.post("/v1/senders", json={"channel": "null", "address": "12345", "webhook_secret": "s"})
        assert sender.status_code == 201, sender.text
        sender_id = sender.json()["id"]

        bad = await client.post(
            "/v1/connectors",
            json={"type": "AMAZON_LEX", "sender_id": sender_id, "credentials": '{"accessKeyId": "AKIB236OJSYDX44UW"}'},
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["details"][0]["field"] == "credentials.secretKey"

        no_bot = json.dumps({**json.loads(SEED_CREDENTIALS), "bot": {}})
        bad = await client.post(
            "/v1/connectors", json={"type": "AMAZON_LEX", "sender_id": sender_id, "credentials": no_bot}
        )
        assert bad.json()["error"]["details"][0]["field"] == "credentials.bot.aliasId"
        assert "Qh6nZHoFcVZ" not in bad.text

        bad = await client.post(
            "/v1/connectors",
            json={
                "type": "AMAZON_LEX",
                "sender_id": sender_id,
                "credentials": fake_credentials(),
                "config": {"base_url": "not a url"},
            },
        )
        assert bad.json()["error"]["details"][0]["field"] == "config.base_url"

        seed = await client.post(
            "/v1/connectors",
            json={
                "external_id": "lex-bot",
                "type": "AMAZON_LEX",
                "sender_id": sender_id,
                "credentials": SEED_CREDENTIALS,
            },
        )
        assert seed.status_code == 201, seed.text
        assert "credentials" not in seed.json() and "Qh6nZHoFcVZ" not in seed.text
        await client.delete(f"/v1/connectors/{seed.json()['id']}")

        created = await client.post(
            "/v1/connectors",
            json={
                "type": "AMAZON_LEX",
                "sender_id": sender_id,
                "credentials": json.loads(fake_credentials("v2")),  # an object is accepted too
                "config": {"base_url": FAKE_BASE_URL},
            },
        )
        assert created.status_code == 201, created.text
        assert SECRET_KEY not in created.text

        rt = app.state.runtime
        connector = await rt.store.get_connector(created.json()["id"])
        conversation = Conversation(
            sender_id=sender_id, contact="+15551234567", connector_id=connector.id, opened_at=0.0, last_mo_at=0.0
        )
        session = rt.bot_session(connector, conversation)
        backend = rt.bot("AMAZON_LEX")
        await backend.open(session)
        replies = await backend.send(session, mo("hello host"))
        assert [r.text for r in replies] == ["echo: hello host"]
        assert fake.requests[-1].session_id == session.state["session_id"]


def test_public_surface() -> None:
    import botbridge_lex

    assert sorted(botbridge_lex.__all__) == [
        "CONNECTOR_TYPE",
        "LexBot",
        "LexCredentials",
        "V1Bot",
        "V2Bot",
        "parse_credentials",
        "replies_from_v1",
        "replies_from_v2",
        "session_id_for",
    ]
    assert all(hasattr(botbridge_lex, name) for name in botbridge_lex.__all__)
