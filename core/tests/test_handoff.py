"""Handing a conversation to a person and back: by the bot's signal, the API, a keyword, a timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .conftest import KEY_B
from .test_engine import World, make_world

pytestmark = pytest.mark.anyio
CONTACT = "+15550188"
CONFIG = {"handoff_timeout": 600, "handoff_timeout_text": "Back to the bot.", "resume_keywords": ["bot"]}


@pytest.fixture
async def world(tmp_path: Any) -> Any:
    async with make_world(tmp_path, config=CONFIG) as w:
        yield w


async def settled(world: World) -> None:
    await asyncio.wait_for(world.rt.engine.idle(), 10)


def texts(world: World) -> list[str]:
    return [m["text"] for m in world.channel.outbox if m["to"] == CONTACT]


def bot_saw(world: World) -> list[str]:
    return [text for _, text in world.bot.seen]


async def conversation(world: World) -> dict[str, Any]:
    [found] = (await world.client.get("/v1/conversations", params={"contact": CONTACT})).json()["items"]
    return found  # type: ignore[no-any-return]


async def test_the_bots_signal_hands_off_an_agent_answers_and_the_timeout_returns_it(world: World) -> None:
    await world.mo("agent", contact=CONTACT)
    await world.until(lambda: texts(world) == ["Connecting you to a person."])
    await settled(world)
    handed = await conversation(world)
    assert handed["handoff_by"] == "bot" and handed["handoff_at"] is not None
    [event] = world.subscriber.of_type("conversation_handoff")
    assert event["event"]["fld-val-list"]["conversation_id"] == handed["id"]

    await world.mo("is anyone there?", contact=CONTACT)
    await settled(world)
    assert bot_saw(world) == ["agent"]  # not the bot's any more
    [waiting] = world.subscriber.of_type("mo_waiting_for_agent")
    assert waiting["event"]["fld-val-list"]["message_body"] == "is anyone there?"

    body = {"sender_id": world.sender_id, "to": CONTACT, "text": "Hi, Sam here.", "conversation_id": handed["id"]}
    assert (await world.client.post("/v1/messages", json=body)).status_code == 202
    await world.until(lambda: texts(world)[-1:] == ["Hi, Sam here."])
    await settled(world)

    world.clock.advance(599)  # the agent answered: the timeout counts from then
    await world.mo("thanks", contact=CONTACT)
    await settled(world)
    assert bot_saw(world) == ["agent"] and len(world.subscriber.of_type("mo_waiting_for_agent")) == 2

    world.clock.advance(601)
    await world.mo("hello?", contact=CONTACT)
    await world.until(lambda: texts(world)[-2:] == ["Back to the bot.", "echo: hello?"])
    assert bot_saw(world) == ["agent", "hello?"]
    [resumed] = world.subscriber.of_type("conversation_resumed")
    assert resumed["event"]["fld-val-list"]["reason"] == "timeout"
    await settled(world)
    items = (await world.client.get(f"/v1/conversations/{handed['id']}/messages")).json()["items"]
    kinds = [i["type"] for i in items if i["type"] in ("handoff", "resumed")]
    assert kinds == ["handoff", "resumed"] and (await conversation(world))["handoff_at"] is None


async def test_the_api_hands_off_and_resumes(world: World) -> None:
    await world.mo("hello", contact=CONTACT)
    await world.until(lambda: texts(world) == ["echo: hello"])
    await settled(world)
    current = await conversation(world)
    response = await world.client.post(f"/v1/conversations/{current['id']}/handoff")
    assert response.status_code == 202
    await settled(world)
    assert (await conversation(world))["handoff_by"] == "api"
    await world.mo("for a person", contact=CONTACT)
    await settled(world)
    assert bot_saw(world) == ["hello"]

    async with world.client_of(KEY_B) as other:  # another account's conversation is not found
        assert (await other.post(f"/v1/conversations/{current['id']}/resume")).status_code == 404
    assert (await world.client.post(f"/v1/conversations/{current['id']}/resume")).status_code == 202
    await settled(world)
    [resumed] = world.subscriber.of_type("conversation_resumed")
    assert resumed["event"]["fld-val-list"]["reason"] == "api"
    await world.mo("for the bot", contact=CONTACT)
    await world.until(lambda: texts(world)[-1:] == ["echo: for the bot"])
    assert (await world.client.post("/v1/conversations/unknown/handoff")).status_code == 404


async def test_a_keyword_from_the_contact_returns_it_to_the_bot(world: World) -> None:
    await world.mo("agent", contact=CONTACT)
    await world.until(lambda: len(texts(world)) == 1)
    await world.mo("Bot!", contact=CONTACT)
    await settled(world)
    assert bot_saw(world) == ["agent"]  # the keyword itself is not a question for the bot
    [resumed] = world.subscriber.of_type("conversation_resumed")
    assert resumed["event"]["fld-val-list"]["reason"] == "keyword"
    await world.mo("and now?", contact=CONTACT)
    await world.until(lambda: texts(world)[-1:] == ["echo: and now?"])


async def test_an_ended_conversation_cannot_be_handed_off(world: World) -> None:
    await world.mo("hello", contact=CONTACT)
    await world.until(lambda: len(texts(world)) == 1)
    await settled(world)
    first = await conversation(world)
    world.clock.advance(4000)  # past the conversation timeout: the next MO opens a new one
    await world.mo("again", contact=CONTACT)
    await world.until(lambda: len(texts(world)) == 2)
    await settled(world)
    response = await world.client.post(f"/v1/conversations/{first['id']}/handoff")
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"


async def test_stop_wins_over_a_hand_off(world: World) -> None:
    await world.mo("agent", contact=CONTACT)
    await world.until(lambda: len(texts(world)) == 1)
    await world.mo("STOP", contact=CONTACT)
    await world.until(lambda: len(texts(world)) == 2)
    await settled(world)
    assert texts(world)[1].startswith("You are unsubscribed")
    assert len(world.subscriber.of_type("contact_opted_out")) == 1
    assert world.subscriber.of_type("mo_waiting_for_agent") == []
