"""Rapid-fire MOs of one contact within a connector's coalesce_window: one bot turn."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .test_engine import World, make_world

pytestmark = pytest.mark.anyio
CONTACT = "+15550199"


def texts(world: World) -> list[str]:
    return [m["text"] for m in world.channel.outbox if m["to"] == CONTACT]


def bot_saw(world: World) -> list[str]:
    return [text for _, text in world.bot.seen]


async def quiet(world: World) -> None:
    """Let the workers run what is due now, without moving the clock."""
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_two_mos_half_a_second_apart_are_one_turn(tmp_path: Any) -> None:
    async with make_world(tmp_path, config={"coalesce_window": 1.5}) as world:
        await world.mo("my order", contact=CONTACT)
        await quiet(world)
        world.clock.advance(0.5)
        await world.mo("has not arrived", contact=CONTACT)
        await quiet(world)
        world.clock.advance(1.4)  # 1.9 s after the first, 1.4 s after the second: still open
        await quiet(world)
        assert bot_saw(world) == [] and texts(world) == []
        world.clock.advance(0.2)
        await world.until(lambda: texts(world) == ["echo: my order has not arrived"], step=0)
        assert bot_saw(world) == ["my order has not arrived"]
        await world.mo("thanks", contact=CONTACT)  # a new window
        await world.until(lambda: len(texts(world)) == 2)
        assert bot_saw(world) == ["my order has not arrived", "thanks"]
        await asyncio.wait_for(world.rt.engine.idle(), 10)
        [conversation] = (await world.client.get("/v1/conversations")).json()["items"]
        items = (await world.client.get(f"/v1/conversations/{conversation['id']}/messages")).json()["items"]
        assert [i.get("text") for i in items if i["type"] == "mo"] == ["my order", "has not arrived", "thanks"]


async def test_an_answer_to_options_is_not_held(tmp_path: Any) -> None:
    async with make_world(tmp_path, config={"coalesce_window": 1.5}) as world:
        await world.mo("menu", contact=CONTACT)
        await world.until(lambda: len(texts(world)) == 1)
        asked = world.clock.now()
        await world.mo("2", contact=CONTACT)  # picks an option: straight to the bot
        await world.until(lambda: len(texts(world)) == 2, step=0.001)  # sends are spaced by the rate limit
        assert bot_saw(world) == ["menu", "sales"] and world.clock.now() - asked < 1.0  # no window waited


async def test_without_a_window_each_mo_is_a_turn(tmp_path: Any) -> None:
    async with make_world(tmp_path) as world:
        await world.mo("one", contact=CONTACT)
        await world.mo("two", contact=CONTACT)
        await world.until(lambda: len(texts(world)) == 2)
        assert bot_saw(world) == ["one", "two"]
