"""Inbound media for a text-only bot: described in the text ("[image]", or the connector's media_text)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from botbridge.models import InboundMessage, Media
from botbridge.render import describe_media

from .test_engine import make_world

pytestmark = pytest.mark.anyio
PHOTO = {"url": "https://cdn.example/p.jpg", "content_type": "image/jpeg"}
VOICE = {"url": "https://cdn.example/v.ogg", "content_type": "audio/ogg"}


def test_each_item_is_named_by_its_kind_after_the_text() -> None:
    def mo(text: str, *media: dict[str, Any]) -> InboundMessage:
        items = [Media(**m) for m in media]
        return InboundMessage(channel="c", sender_id="s", provider_message_id="p", contact="+1", text=text, media=items)

    assert describe_media(mo("look", PHOTO)).text == "look [image]"
    assert describe_media(mo("", PHOTO, VOICE, {"url": "https://x/doc"})).text == "[image] [audio] [file]"
    assert describe_media(mo("hi")).text == "hi"
    assert describe_media(mo("look", PHOTO), "(a picture)").text == "look (a picture)"
    assert describe_media(mo("look", PHOTO), "").text == "look"


async def test_a_text_only_bot_gets_the_description(tmp_path: Any) -> None:
    async with make_world(tmp_path) as world:
        await world.mo("my meter", media=[PHOTO])
        await world.until(lambda: len(world.channel.outbox) == 1)
        assert [text for _, text in world.bot.seen] == ["my meter [image]"]


async def test_the_connectors_media_text(tmp_path: Any) -> None:
    async with make_world(tmp_path, config={"media_text": "<photo>"}) as world:
        await world.mo("", media=[PHOTO])
        await world.until(lambda: len(world.channel.outbox) == 1)
        await asyncio.wait_for(world.rt.engine.idle(), 10)
        assert [text for _, text in world.bot.seen] == ["<photo>"]
