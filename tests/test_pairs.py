"""Every channel × bot pair through `botbridge serve` over real loopback HTTP.

The host runs as its own process; each provider's fake runs on a loopback
port; a simulated phone sends signed webhooks through the channel fake and
the replies arrive at the channel fake; a subscriber receives the events.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest

from .providers import BOTS, CHANNELS, BotFake, ChannelFake, Subscriber
from .servers import HostProcess, serve_app

pytestmark = pytest.mark.anyio
KEY = "pairs-test-key-1"
SUBSCRIBER_SECRET = "pairs-subscriber-secret"


@dataclass
class World:
    host: HostProcess
    channels: dict[str, tuple[ChannelFake, str]]
    bots: dict[str, tuple[BotFake, str]]
    subscriber: Subscriber
    subscriber_url: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("pairs")
    with ExitStack() as stack:
        channels = {}
        for name, factory in CHANNELS.items():
            side = factory()
            channels[name] = (side, stack.enter_context(serve_app(side.app)))
        bots = {}
        for type_name, factory in BOTS.items():
            bot = factory()
            bots[type_name] = (bot, stack.enter_context(serve_app(bot.app)))
        subscriber = Subscriber(SUBSCRIBER_SECRET)
        subscriber_url = stack.enter_context(serve_app(subscriber.app)) + "/events"
        host = HostProcess(
            {
                "BOTBRIDGE_STORE": f"sqlite:///{workdir}/botbridge.db",
                "BOTBRIDGE_API_KEYS": f"acct1:{KEY}",
                "BOTBRIDGE_ALLOW_PRIVATE_WEBHOOK_URLS": "true",
            },
            workdir,
        ).start()
        stack.callback(host.stop)
        with httpx.Client(base_url=host.url, headers={"Authorization": f"Bearer {KEY}"}) as api:
            response = api.post("/v1/subscriptions", json={"url": subscriber_url, "secret": SUBSCRIBER_SECRET})
            assert response.status_code == 201, response.text
        yield World(host, channels, bots, subscriber, subscriber_url)


async def eventually(condition: Any, what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.02)


@pytest.mark.parametrize("bot_type", list(BOTS))
@pytest.mark.parametrize("channel_name", list(CHANNELS))
async def test_two_turns(world: World, channel_name: str, bot_type: str) -> None:
    channel, channel_url = world.channels[channel_name]
    bot, bot_url = world.bots[bot_type]
    async with httpx.AsyncClient(base_url=world.host.url, headers={"Authorization": f"Bearer {KEY}"}) as api:
        sender = await api.post("/v1/senders", json=channel.sender_body(channel_url))
        assert sender.status_code == 201, sender.text
        sender_id = sender.json()["id"]
        connector = await api.post("/v1/connectors", json=bot.connector_body(sender_id, bot_url))
        assert connector.status_code == 201, connector.text
        webhook_url = sender.json()["webhook_url"]
        contact = f"+1555{abs(hash((channel_name, bot_type))) % 10**7:07d}"
        sessions_before = bot.sessions()

        for turn in ("hello", "second turn"):
            status = await channel.phone_says(webhook_url, turn, contact)
            assert status is not None and 200 <= status < 300, (channel_name, turn, status)
            await eventually(
                lambda t=turn: bot.echo(t) in channel.texts_to(contact), f"{channel_name}/{bot_type} reply"
            )
        assert channel.texts_to(contact) == [bot.echo("hello"), bot.echo("second turn")]
        assert len(bot.sessions() - sessions_before) == 1  # one backend session

        await eventually(
            lambda: len(world.subscriber.of("message_request_state_change", sender_id)) == 2, "state change events"
        )
        received = world.subscriber.of("mo_message_received", sender_id)
        assert [e["event"]["fld-val-list"]["message_body"] for e in received] == ["hello", "second turn"]
        for event in received:
            assert list(event) == ["topic", "attempt", "event", "event-id"]
            assert list(event["event"]) == ["fld-val-list", "evt-tp", "timestamp"]
            fields = event["event"]["fld-val-list"]
            assert fields["from_address"].lstrip("+") == contact.lstrip("+")
            assert fields["company-id"] == "acct1" and fields["sender_id_id"] == sender_id
        states = [
            e["event"]["fld-val-list"]["new_state"]
            for e in world.subscriber.of("message_request_state_change", sender_id)
        ]
        assert all(state in ("SENT", "QUEUED") for state in states)
