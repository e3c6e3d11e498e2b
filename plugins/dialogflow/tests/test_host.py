"""The plugin inside the real host: discovery, the connector API, a turn through the runtime."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from botbridge import Channel, Conversation, FakeClock, InboundMessage, hookimpl
from botbridge.host import create_app
from botbridge.plugins import Plugins
from botbridge.settings import Settings
from botbridge.stores import memory
from botbridge.testing import api_client
from botbridge_dialogflow import plugin as dialogflow_plugin
from botbridge_dialogflow.testing import FakeDialogflow

pytestmark = pytest.mark.anyio

API_KEY = "key-123456"
TYPE = "GOOGLE_DIALOG_FLOW"


class StubChannel(Channel):
    """Only there so a sender can exist for the connector to bind."""

    name = "stubsms"
    requires_webhook_secret = False


class StubChannelPlugin:
    @hookimpl
    def register_channels(self, register: Any) -> None:
        register(StubChannel)


def make_plugins() -> Plugins:
    plugins = Plugins()
    plugins.add(memory, "memory", builtin=True)
    plugins.add(dialogflow_plugin, "dialogflow")
    plugins.add(StubChannelPlugin(), "stubchannel")
    plugins.collect()
    return plugins


def test_discovery_finds_the_entry_point() -> None:
    plugins = Plugins.discover(Settings(load_plugins="dialogflow"))  # type: ignore[call-arg]
    info = plugins.infos["dialogflow"]
    assert info.errors == []
    assert info.distribution == "botbridge-dialogflow"
    assert info.connector_types == [TYPE]
    assert plugins.bot_backends[TYPE].__module__ == "botbridge_dialogflow.bot"
    assert sorted(info.hooks) == ["register_bot_backends", "register_fakes"]
    assert ("bot", TYPE) in plugins.fakes


@pytest.fixture
async def host(fake: FakeDialogflow, clock: FakeClock) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    outbound = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app))  # the host closes it
    app = create_app(
        Settings(store="memory://", api_keys=f"acct:{API_KEY}", secret_key="x" * 32),  # type: ignore[arg-type]
        plugins=make_plugins(),
        http=outbound,
        clock=clock,
    )
    async with api_client(app, API_KEY) as client:
        yield app, client


async def _sender(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/senders", json={"channel": "stubsms", "address": "+15550001111"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_plugins_route_lists_the_backend(host: tuple[Any, httpx.AsyncClient]) -> None:
    _, client = host
    listed = {p["name"]: p for p in (await client.get("/v1/plugins")).json()["plugins"]}
    assert listed["dialogflow"]["connector_types"] == [TYPE]
    assert listed["dialogflow"]["kinds"] == ["bot"]


async def test_a_seed_style_connector_is_created_and_answers(
    host: tuple[Any, httpx.AsyncClient], credentials: str, fake: FakeDialogflow, clock: FakeClock
) -> None:
    app, client = host
    sender_id = await _sender(client)
    created = await client.post(
        "/v1/connectors",
        json={
            "type": TYPE,
            "sender_id": sender_id,
            "credentials": credentials,
            "external_id": "my-df-to-rcs-connector",
            "config": {"language_code": "en-US", "base_url": "http://dialogflow.fake"},
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert "credentials" not in body and "PRIVATE KEY" not in created.text
    assert body["config"]["language_code"] == "en-US"

    # One turn through the host's runtime: decrypted credentials, shared client, injected clock.
    runtime = app.state.runtime
    connector = await runtime.store.get_connector(body["id"])
    conversation = Conversation(
        sender_id=sender_id,
        contact="+15557654321",
        connector_id=connector.id,
        opened_at=clock.now(),
        last_mo_at=clock.now(),
    )
    session = runtime.bot_session(connector, conversation)
    bot = runtime.bot(TYPE)
    await bot.open(session)
    replies = await bot.send(
        session,
        InboundMessage(
            channel="stubsms", sender_id=sender_id, provider_message_id="mo-1", contact="+15557654321", text="hi"
        ),
    )
    assert [r.text for r in replies] == ["echo: hi"]
    assert fake.calls[-1].host == "dialogflow.fake" and fake.calls[-1].language_code == "en-US"
    assert json.loads(json.dumps(session.state)) == session.state


async def test_bad_credentials_and_config_are_422_naming_the_field(
    host: tuple[Any, httpx.AsyncClient], account: dict[str, str]
) -> None:
    _, client = host
    sender_id = await _sender(client)
    broken_key = {**account, "private_key": account["private_key"].replace("A", "B", 40)}
    response = await client.post(
        "/v1/connectors", json={"type": TYPE, "sender_id": sender_id, "credentials": json.dumps(broken_key)}
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "credentials.private_key"
    assert account["private_key"][100:140] not in response.text
    response = await client.post(
        "/v1/connectors",
        json={
            "type": TYPE,
            "sender_id": sender_id,
            "credentials": json.dumps(account),
            "config": {"location": "Mars Base 1"},
        },
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "config.location"
