"""A slow bot: the connector's interim text goes out once, the real answer follows."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .test_engine import World, make_world

pytestmark = pytest.mark.anyio
CONFIG = {"interim_text": "One moment...", "interim_after": 2}


def texts(world: World) -> list[str]:
    return [m["text"] for m in world.channel.outbox]


async def test_a_slow_bot_gets_the_interim_text_then_its_answer(tmp_path: Any) -> None:
    async with make_world(tmp_path, config=CONFIG) as world:
        world.bot.gate = asyncio.Event()
        await world.mo("a hard question")
        await world.until(lambda: bool(world.bot.seen), step=0)
        world.clock.advance(1.9)
        await asyncio.sleep(0.05)
        assert texts(world) == []  # not yet: the bot has 2 s
        world.clock.advance(0.2)
        await world.until(lambda: texts(world) == ["One moment..."], step=0)
        world.bot.gate.set()
        await world.until(lambda: len(texts(world)) == 2)  # the clock moves: sends are spaced by the rate limit
        assert texts(world) == ["One moment...", "echo: a hard question"]
        await asyncio.wait_for(world.rt.engine.idle(), 10)
        [conversation] = (await world.client.get("/v1/conversations")).json()["items"]
        items = (await world.client.get(f"/v1/conversations/{conversation['id']}/messages")).json()["items"]
        sent = [(i["message"]["origin"], i["message"]["state"]) for i in items if i["type"] == "mt"]
        assert sent == [("interim", "SENT"), ("bot", "SENT")]
        changes = world.subscriber.of_type("message_request_state_change")
        assert len(changes) == 2


async def test_a_bot_that_answers_in_time_gets_no_interim_text(tmp_path: Any) -> None:
    async with make_world(tmp_path, config=CONFIG) as world:
        await world.mo("an easy one")
        await world.until(lambda: texts(world) == ["echo: an easy one"], step=0)
        world.clock.advance(10)
        await asyncio.sleep(0.05)
        await asyncio.wait_for(world.rt.engine.idle(), 10)
        assert texts(world) == ["echo: an easy one"]


async def test_interim_settings_are_checked(tmp_path: Any) -> None:
    async with make_world(tmp_path) as world:
        for bad, field in [({"interim_after": 0}, "interim_after"), ({"interim_text": ""}, "interim_text")]:
            current = (await world.client.get(f"/v1/connectors/{world.connector_id}")).json()
            body = {"version_number": current["version_number"], "config": bad}
            response = await world.client.patch(f"/v1/connectors/{world.connector_id}", json=body)
            assert response.status_code == 422 and field in response.text, response.text
