"""Every channel × bot pair through `botbridge serve` over real loopback HTTP.

The host runs as its own process; each provider's fake runs on a loopback
port; a simulated phone sends signed webhooks through the channel fake and
the replies arrive at the channel fake; a subscriber receives the events.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest

from .providers import BOTS, CHANNELS, BotFake, ChannelFake, Subscriber
from .servers import HostProcess, eventually, serve_app

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


async def _pair(world: World, channel_name: str, bot_type: str, **connector: Any) -> tuple[Any, str, httpx.AsyncClient]:
    channel, channel_url = world.channels[channel_name]
    bot, bot_url = world.bots[bot_type]
    api = httpx.AsyncClient(base_url=world.host.url, headers={"Authorization": f"Bearer {KEY}"})
    sender = (await api.post("/v1/senders", json=channel.sender_body(channel_url))).json()
    body = bot.connector_body(sender["id"], bot_url)
    body["config"] = {**body["config"], **connector.pop("config", {})}
    response = await api.post("/v1/connectors", json={**body, **connector})
    assert response.status_code == 201, response.text
    return response.json(), sender["webhook_url"], api


def _refused(bot_type: str, credentials: str) -> str:
    import json

    if bot_type == "AZURE_BOT_DIRECT_LINE":
        return "Refused0.cwA.xyz.Zr4kDm7F24cwABEsSz0w9A3HT1jhIo67glkty"
    data = json.loads(credentials)
    if bot_type == "AMAZON_LEX":
        return json.dumps({**data, "secretKey": "wrong/lex+secret/key/0123456789abcdefghij"})
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return json.dumps({**data, "private_key": pem.decode()})


@pytest.mark.parametrize("bot_type", list(BOTS))
async def test_refused_credentials_surface_on_the_connector(world: World, bot_type: str) -> None:
    bot, bot_url = world.bots[bot_type]
    good = bot.connector_body("x", bot_url)["credentials"]
    connector, webhook_url, api = await _pair(
        world, "sinch", bot_type, credentials=_refused(bot_type, good), config={"fallback_text": "We are on it."}
    )
    channel, _ = world.channels["sinch"]
    contact = f"+1555601{list(BOTS).index(bot_type):04d}"
    try:
        assert await channel.phone_says(webhook_url, "hello", contact) == 200
        await eventually(lambda: channel.texts_to(contact) == ["We are on it."], "the fallback text")
        state = (await api.get(f"/v1/connectors/{connector['id']}")).json()
        assert state["state"] == "credentials_invalid", state
        assert bot.connector_body("x", bot_url)["credentials"] not in str(state)
    finally:
        await api.aclose()


async def test_a_direct_line_bot_that_answers_two_seconds_later_reaches_the_user(world: World) -> None:
    bot, _ = world.bots["AZURE_BOT_DIRECT_LINE"]
    bot.fake.add_rule("ponder", "Here is my considered answer.", delay=2.0)
    _, webhook_url, api = await _pair(
        world, "scg", "AZURE_BOT_DIRECT_LINE", config={"reply_wait": 0.5, "poll_interval": 0.2}
    )
    channel, _ = world.channels["scg"]
    contact = "+15556020001"
    try:
        assert await channel.phone_says(webhook_url, "ponder this", contact) == 200
        await eventually(lambda: "Here is my considered answer." in channel.texts_to(contact), "the late reply")
    finally:
        await api.aclose()


@pytest.mark.parametrize("channel_name", list(CHANNELS))
async def test_stop_start_and_help_on_every_channel(world: World, channel_name: str) -> None:
    """STOP is confirmed and kept from the bot; a reply the bot makes later is not sent; HELP; START restores."""
    bot, _ = world.bots["AZURE_BOT_DIRECT_LINE"]
    bot.fake.add_rule("think about it", "A late thought.", delay=2.0)
    _, webhook_url, api = await _pair(
        world, channel_name, "AZURE_BOT_DIRECT_LINE", config={"reply_wait": 0.3, "poll_interval": 0.2}
    )
    channel, _ = world.channels[channel_name]
    contact = f"+1555603{list(CHANNELS).index(channel_name):04d}"
    try:
        assert await channel.phone_says(webhook_url, "think about it", contact) == 200
        assert await channel.phone_says(webhook_url, "Stop", contact) == 200
        await eventually(lambda: len(channel.texts_to(contact)) == 1, "the STOP confirmation")
        assert channel.texts_to(contact)[0].startswith("You are unsubscribed")
        [opted_out] = (await api.get("/v1/opt-outs")).json()["items"][-1:]
        stored_contact = opted_out["contact"]
        assert stored_contact.lstrip("+") == contact.lstrip("+") and opted_out["keyword"] == "STOP"

        # the bot's answer to the turn before the STOP arrives later: recorded, not sent
        async def suppressed() -> list[dict[str, Any]]:
            found = (await api.get("/v1/messages", params={"to": stored_contact, "state": "FAILED"})).json()
            return [m for m in found["items"] if m["text"] == "A late thought."]

        for _ in range(100):
            if await suppressed():
                break
            await anyio.sleep(0.05)
        [late] = await suppressed()
        assert late["reason_code"] == "opted_out"
        refused = await api.post(
            "/v1/messages", json={"sender_id": opted_out["sender_id"], "to": stored_contact, "text": "promo"}
        )
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "contact_opted_out"

        assert await channel.phone_says(webhook_url, "HELP", contact) == 200
        await eventually(lambda: len(channel.texts_to(contact)) == 2, "the HELP answer")
        assert await channel.phone_says(webhook_url, "start", contact) == 200
        await eventually(lambda: len(channel.texts_to(contact)) == 3, "the START confirmation")
        assert await channel.phone_says(webhook_url, "hello again", contact) == 200
        await eventually(lambda: bot.echo("hello again") in channel.texts_to(contact), "the bot's answer")
        assert "A late thought." not in channel.texts_to(contact)
        seen = [text for c in bot.fake.conversations.values() for text in c.user_texts()]
        assert "think about it" in seen and not {"Stop", "HELP", "start"} & set(seen)  # the bot never saw them
    finally:
        await api.aclose()


async def test_a_bot_answering_after_four_seconds_sends_the_interim_text_first(world: World) -> None:
    bot, _ = world.bots["AZURE_BOT_DIRECT_LINE"]
    bot.fake.add_rule("ponder slowly", "Here it is, at last.", delay=4.0)
    config = {"reply_wait": 6.0, "poll_interval": 0.2, "interim_text": "One moment please.", "interim_after": 2}
    _, webhook_url, api = await _pair(world, "sinch", "AZURE_BOT_DIRECT_LINE", config=config)
    channel, _ = world.channels["sinch"]
    contact = "+15556040001"
    try:
        assert await channel.phone_says(webhook_url, "ponder slowly", contact) == 200
        await eventually(lambda: len(channel.texts_to(contact)) == 2, "the interim text and the answer")
        assert channel.texts_to(contact) == ["One moment please.", "Here it is, at last."]
    finally:
        await api.aclose()


@pytest.mark.parametrize("channel_name", list(CHANNELS))
async def test_a_bot_framework_handoff_goes_to_an_agent_and_back(world: World, channel_name: str) -> None:
    """A handoff.initiate event from the bot: the next MO is the agent's, the agent's reply arrives, resume."""
    bot, _ = world.bots["AZURE_BOT_DIRECT_LINE"]
    bot.fake.add_rule("a human please", "Let me find someone.", {"type": "event", "name": "handoff.initiate"})
    _, webhook_url, api = await _pair(world, channel_name, "AZURE_BOT_DIRECT_LINE")
    channel, _ = world.channels[channel_name]
    contact = f"+1555605{list(CHANNELS).index(channel_name):04d}"
    try:
        assert await channel.phone_says(webhook_url, "a human please", contact) == 200
        await eventually(lambda: channel.texts_to(contact) == ["Let me find someone."], "the bot's last words")
        conversations = (await api.get("/v1/conversations")).json()["items"]
        [handed] = [c for c in conversations if c["contact"].lstrip("+") == contact.lstrip("+")]
        for _ in range(100):
            handed = (await api.get(f"/v1/conversations/{handed['id']}")).json()
            if handed["handoff_at"]:
                break
            await anyio.sleep(0.05)
        assert handed["handoff_by"] == "bot"

        assert await channel.phone_says(webhook_url, "my card was charged twice", contact) == 200
        await eventually(
            lambda: any(
                e["event"]["fld-val-list"].get("conversation_id") == handed["id"]
                for e in world.subscriber.of("mo_waiting_for_agent")
            ),
            "the MO published for an agent",
        )
        body = {
            "sender_id": handed["sender_id"],
            "to": handed["contact"],
            "text": "Agent Ana here.",
            "conversation_id": handed["id"],
        }
        assert (await api.post("/v1/messages", json=body)).status_code == 202
        await eventually(lambda: channel.texts_to(contact)[-1:] == ["Agent Ana here."], "the agent's reply")

        assert (await api.post(f"/v1/conversations/{handed['id']}/resume")).status_code == 202
        await eventually(
            lambda: any(
                e["event"]["fld-val-list"].get("conversation_id") == handed["id"]
                for e in world.subscriber.of("conversation_resumed")
            ),
            "the conversation back with the bot",
        )
        assert await channel.phone_says(webhook_url, "thanks bot", contact) == 200
        await eventually(lambda: bot.echo("thanks bot") in channel.texts_to(contact), "the bot again")
        seen = [text for c in bot.fake.conversations.values() for text in c.user_texts()]
        assert "my card was charged twice" not in seen  # the bot never saw what the agent handled
    finally:
        await api.aclose()


@pytest.mark.parametrize("bot_type", list(BOTS))
async def test_a_photo_reaches_each_bot_as_it_can_take_it(world: World, bot_type: str) -> None:
    """Direct Line gets an attachment with the URL; the text-only backends get "[image]" in the text."""
    bot, _ = world.bots[bot_type]
    _, webhook_url, api = await _pair(world, "sinch", bot_type)
    channel, _ = world.channels["sinch"]
    contact = f"+1555606{list(BOTS).index(bot_type):04d}"
    url = "https://cdn.example.com/meter.jpg"
    try:
        body = channel.fake.inbound_body(contact=contact.lstrip("+"), content={"media_message": {"url": url}})
        assert (await channel.fake.deliver(webhook_url, body))[-1].status_code == 200
        await eventually(lambda: bool(channel.texts_to(contact)), f"{bot_type}'s answer")
        if bot_type == "AZURE_BOT_DIRECT_LINE":
            posted = [a for c in bot.fake.conversations.values() for a in c.user_activities()]
            urls = [att.get("contentUrl") for a in posted for att in a.get("attachments", [])]
            assert url in urls and "[image]" not in channel.texts_to(contact)[0]
        else:
            assert channel.texts_to(contact) == [bot.echo("[image]")]
    finally:
        await api.aclose()


async def test_two_mos_half_a_second_apart_make_one_bot_turn(world: World) -> None:
    bot, _ = world.bots["AZURE_BOT_DIRECT_LINE"]
    _, webhook_url, api = await _pair(world, "scg", "AZURE_BOT_DIRECT_LINE", config={"coalesce_window": 1.5})
    channel, _ = world.channels["scg"]
    contact = "+15556070001"
    try:
        assert await channel.phone_says(webhook_url, "I would like", contact) == 200
        await anyio.sleep(0.5)
        assert await channel.phone_says(webhook_url, "to change my plan", contact) == 200
        await eventually(lambda: bool(channel.texts_to(contact)), "the one answer")
        await anyio.sleep(0.5)  # nothing else comes
        assert channel.texts_to(contact) == [bot.echo("I would like to change my plan")]
    finally:
        await api.aclose()


@pytest.mark.parametrize("channel_name", list(CHANNELS))
async def test_replies_are_shaped_for_sms_on_every_channel(world: World, channel_name: str) -> None:
    """A long typographic reply goes as GSM-7 parts cut between words; a turn's three messages as one SMS."""
    from botbridge.shaping import is_gsm7, segments

    bot, _ = world.bots["AZURE_BOT_DIRECT_LINE"]
    bot.fake.add_rule("three things", "First.", "Second.", "Third.")
    connector, webhook_url, api = await _pair(world, channel_name, "AZURE_BOT_DIRECT_LINE")
    channel, _ = world.channels[channel_name]
    contact = f"+1555608{list(CHANNELS).index(channel_name):04d}"
    try:
        sender = (await api.get(f"/v1/senders/{connector['sender_id']}")).json()
        config = {**sender["config"], "shaping": {"max_segments": 2}}
        patched = await api.patch(f"/v1/senders/{sender['id']}", json={"config": config})
        assert patched.status_code == 200, patched.text
        long_text = "It’s " + " ".join(f"word{i}" for i in range(115))  # about 700 characters
        assert await channel.phone_says(webhook_url, long_text, contact) == 200
        expected = bot.echo(long_text).replace("’", "'")
        await eventually(lambda: " ".join(channel.texts_to(contact)) == expected, "every part, in order")
        parts = channel.texts_to(contact)
        assert len(parts) >= 3 and all(is_gsm7(p) and segments(p) <= 2 for p in parts)

        assert await channel.phone_says(webhook_url, "three things", contact) == 200
        await eventually(lambda: len(channel.texts_to(contact)) == len(parts) + 1, "one merged SMS")
        await anyio.sleep(0.3)
        assert channel.texts_to(contact)[len(parts) :] == ["First.\n\nSecond.\n\nThird."]
    finally:
        await api.aclose()


async def test_a_dialogflow_cx_live_agent_handoff_and_its_timeout(world: World) -> None:
    """CX liveAgentHandoff: the handoff event, the next MO not sent to the bot, an agent's reply, the timeout."""
    bot, _ = world.bots["GOOGLE_DIALOG_FLOW"]
    bot.fake.add_cx_agent(bot.info["project_id"], "global", "care-agent-1")
    bot.fake.rule(
        "speak to a human",
        messages=[{"text": {"text": ["Transferring you."]}}, {"liveAgentHandoff": {"metadata": {"queue": "care"}}}],
    )
    config = {"agent": "care-agent-1", "location": "global", "handoff_timeout": 2, "handoff_timeout_text": "Bot here."}
    _, webhook_url, api = await _pair(world, "bird", "GOOGLE_DIALOG_FLOW", config=config)
    channel, _ = world.channels["bird"]
    contact = "+15556090001"
    try:
        assert await channel.phone_says(webhook_url, "speak to a human", contact) == 200
        await eventually(lambda: channel.texts_to(contact) == ["Transferring you."], "the bot's last words")

        def handed() -> list[dict[str, Any]]:
            return [
                e["event"]["fld-val-list"]
                for e in world.subscriber.of("conversation_handoff")
                if e["event"]["fld-val-list"]["from_address"].lstrip("+") == contact.lstrip("+")
            ]

        await eventually(lambda: len(handed()) == 1, "the handoff event")
        assert handed()[0]["reason"] == "bot"
        calls = len(bot.fake.calls)
        assert await channel.phone_says(webhook_url, "hello, human?", contact) == 200
        await eventually(
            lambda: any(
                e["event"]["fld-val-list"]["message_body"] == "hello, human?"
                for e in world.subscriber.of("mo_waiting_for_agent")
            ),
            "the MO for the agent",
        )
        assert len(bot.fake.calls) == calls  # the bot was not asked
        conversation_id = handed()[0]["conversation_id"]
        conversation = (await api.get(f"/v1/conversations/{conversation_id}")).json()
        body = {
            "sender_id": conversation["sender_id"],
            "to": conversation["contact"],
            "text": "Hi, it's Kim.",
            "conversation_id": conversation_id,
        }
        assert (await api.post("/v1/messages", json=body)).status_code == 202
        await eventually(lambda: channel.texts_to(contact)[-1:] == ["Hi, it's Kim."], "the agent's reply")
        await anyio.sleep(2.2)  # no agent message for handoff_timeout
        assert await channel.phone_says(webhook_url, "anyone?", contact) == 200
        await eventually(lambda: channel.texts_to(contact)[-2:-1] == ["Bot here."], "the timeout text")
        assert len(bot.fake.calls) == calls + 1  # the bot has the conversation again
    finally:
        await api.aclose()
