"""Dialogflow's rich messages on a text channel, from shapes Google's discovery documents define.

Each type is scripted into the fake as the official schema has it (checked
here, and again by the discovery oracle on the fake's whole answer), sent
through the backend, and read as core renders it for a text-only channel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botbridge import BotSession, InboundMessage, Media, Option, Reply
from botbridge.render import as_text, match_option
from botbridge_dialogflow import DialogflowBackend, cx_replies, es_replies
from botbridge_dialogflow.responses import MAX_TABLE_ROWS
from botbridge_dialogflow.testing import FakeDialogflow

from . import oracle
from .conftest import PROJECT

pytestmark = pytest.mark.anyio

SessionFactory = Callable[..., BotSession]
AGENT = "0b5c8a0e-1a2b-4c3d-9e8f-0123456789ab"
ES_MESSAGE = "GoogleCloudDialogflowV2IntentMessage"
CX_MESSAGE = "GoogleCloudDialogflowCxV3ResponseMessage"
# The ES rich kinds this plugin renders beyond text/card/quick replies, and their schemas.
RICH_KINDS = {
    "basicCard": "GoogleCloudDialogflowV2IntentMessageBasicCard",
    "listSelect": "GoogleCloudDialogflowV2IntentMessageListSelect",
    "carouselSelect": "GoogleCloudDialogflowV2IntentMessageCarouselSelect",
    "browseCarouselCard": "GoogleCloudDialogflowV2IntentMessageBrowseCarouselCard",
    "tableCard": "GoogleCloudDialogflowV2IntentMessageTableCard",
    "mediaContent": "GoogleCloudDialogflowV2IntentMessageMediaContent",
}


def official(version: str, message: dict[str, Any]) -> dict[str, Any]:
    """`message`, once Google's schema for a response message has accepted it."""
    name = ES_MESSAGE if version == "v2" else CX_MESSAGE
    assert oracle.problems(version, name, message, request=False) == []
    return message


def shown(replies: list[Reply]) -> str:
    """What a text-only channel shows for the replies."""
    return "\n".join(as_text(reply) for reply in replies)


def _message(session: BotSession, text: str, postback: str | None = None) -> InboundMessage:
    return InboundMessage(
        channel="t", sender_id="s", provider_message_id=text, contact=session.contact, text=text, postback=postback
    )


async def es_turn(
    backend: DialogflowBackend, fake: FakeDialogflow, session: BotSession, message: dict[str, Any]
) -> list[Reply]:
    fake.rule("rich", text="fallback text", messages=[official("v2", message)])
    return await backend.send(session, _message(session, "rich please"))


async def test_basic_card_is_title_text_image_and_links(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    card = {
        "title": "Your parcel",
        "subtitle": "On its way",
        "formattedText": "**Arrives** tomorrow  \nbetween 9 and 12",
        "image": {"imageUri": "https://img.test/parcel.png", "accessibilityText": "a parcel"},
        "buttons": [{"title": "Track it", "openUriAction": {"uri": "https://shop.test/track/42"}}],
    }
    replies = await es_turn(backend, fake, make_session(), {"basicCard": card})
    assert replies == [
        Reply(
            text="Your parcel\nOn its way\nArrives tomorrow\nbetween 9 and 12\nTrack it: https://shop.test/track/42",
            media=[Media(url="https://img.test/parcel.png", caption="a parcel")],
        )
    ]
    # A button that opens a page is a link to follow, not an answer to send back.
    assert "Reply with a number" not in shown(replies)


async def test_list_select_items_are_numbered_options_answered_with_their_key(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    select = {
        "title": "Pick a plan",
        "subtitle": "All plans include support",
        "items": [
            {"info": {"key": "plan_basic", "synonyms": ["basic"]}, "title": "Basic", "description": "5 EUR"},
            {
                "info": {"key": "plan_pro"},
                "title": "Pro",
                "description": "20 EUR",
                "image": {"imageUri": "https://img.test/pro.png", "accessibilityText": "pro"},
            },
        ],
    }
    session = make_session()
    replies = await es_turn(backend, fake, session, {"listSelect": select})
    assert replies == [
        Reply(
            text="Pick a plan\nAll plans include support",
            options=[Option(label="Basic – 5 EUR", value="plan_basic"), Option(label="Pro – 20 EUR", value="plan_pro")],
        )
    ]
    assert shown(replies) == (
        "Pick a plan\nAll plans include support\n1. Basic – 5 EUR\n2. Pro – 20 EUR\nReply with a number."
    )
    chosen = match_option("2", replies[0].options)
    assert chosen is not None
    await backend.send(session, _message(session, "2", postback=chosen.value))
    assert fake.calls[-1].text == "plan_pro"


async def test_carousel_select_items_are_numbered_options(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    carousel = {
        "items": [
            {"info": {"key": "red"}, "title": "Red shirt", "image": {"imageUri": "https://img.test/r.png"}},
            {"info": {"key": "blue"}, "title": "Blue shirt", "description": "Organic cotton"},
        ]
    }
    replies = await es_turn(backend, fake, make_session(), {"carouselSelect": carousel})
    assert replies == [
        Reply(
            options=[Option(label="Red shirt", value="red"), Option(label="Blue shirt – Organic cotton", value="blue")]
        )
    ]
    assert shown(replies).startswith("1. Red shirt\n2. Blue shirt – Organic cotton")


async def test_browse_carousel_items_are_text_blocks_with_their_links(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    carousel = {
        "imageDisplayOptions": "CROPPED",
        "items": [
            {
                "openUriAction": {"url": "https://docs.test/setup", "urlTypeHint": "URL_TYPE_HINT_UNSPECIFIED"},
                "title": "Setup guide",
                "description": "Ten minutes",
                "footer": "Updated May",
                "image": {"imageUri": "https://img.test/setup.png"},
            },
            {"openUriAction": {"url": "https://docs.test/faq"}, "title": "FAQ"},
        ],
    }
    replies = await es_turn(backend, fake, make_session(), {"browseCarouselCard": carousel})
    assert replies == [
        Reply(text="Setup guide\nTen minutes\nUpdated May\nhttps://docs.test/setup\n\nFAQ\nhttps://docs.test/faq")
    ]


async def test_table_card_is_readable_lines_bounded_in_rows(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    rows: list[dict[str, Any]] = [
        {"cells": [{"text": f"Item {i}"}, {"text": f"{i}.00"}]} for i in range(MAX_TABLE_ROWS + 5)
    ]
    rows[0]["dividerAfter"] = True
    table = {
        "title": "Prices",
        "subtitle": "Incl. VAT",
        "columnProperties": [{"header": "Item"}, {"header": "Price", "horizontalAlignment": "TRAILING"}],
        "rows": rows,
        "buttons": [{"title": "All prices", "openUriAction": {"uri": "https://shop.test/prices"}}],
    }
    (reply,) = await es_turn(backend, fake, make_session(), {"tableCard": table})
    lines = reply.text.split("\n")
    assert lines[:4] == ["Prices", "Incl. VAT", "Item | Price", "Item 0 | 0.00"]
    assert lines[-2:] == ["… 5 more rows", "All prices: https://shop.test/prices"]
    assert len(lines) == 3 + MAX_TABLE_ROWS + 2
    assert reply.options == [] and reply.media == []


def test_table_cells_missing_in_a_row_keep_their_column() -> None:
    table = {"columnProperties": [{"header": "A"}, {"header": "B"}], "rows": [{"cells": [{}, {"text": "b"}]}, {}]}
    body = {"queryResult": {"fulfillmentMessages": [official("v2", {"tableCard": table})]}}
    assert es_replies(body) == [Reply(text="A | B\n- | b")]


async def test_media_content_is_the_audio_with_its_name_and_description(
    backend: DialogflowBackend, fake: FakeDialogflow, make_session: SessionFactory
) -> None:
    media = {
        "mediaType": "AUDIO",
        "mediaObjects": [
            {
                "name": "Episode 12",
                "description": "On rate limits",
                "contentUrl": "https://cdn.test/ep12.mp3",
                "largeImage": {"imageUri": "https://img.test/cover.png"},
                "icon": {"imageUri": "https://img.test/icon.png"},
            }
        ],
    }
    replies = await es_turn(backend, fake, make_session(), {"mediaContent": media})
    assert replies == [
        Reply(
            text="Episode 12\nOn rate limits",
            media=[Media(url="https://cdn.test/ep12.mp3", content_type="audio/mpeg")],
        )
    ]
    assert shown(replies) == "Episode 12\nOn rate limits\nhttps://cdn.test/ep12.mp3"


def test_media_that_a_phone_cannot_open_is_not_sent() -> None:
    media = {"mediaObjects": [{"name": "Internal", "contentUrl": "gs://bucket/a.mp3"}]}
    body = {"queryResult": {"fulfillmentMessages": [official("v2", {"mediaContent": media})]}}
    assert es_replies(body) == [Reply(text="Internal")]


# --- CX ------------------------------------------------------------------------------


@pytest.fixture
def cx_session(fake: FakeDialogflow, make_session: SessionFactory) -> Callable[..., BotSession]:
    fake.add_cx_agent(PROJECT, "global", AGENT)
    return lambda **config: make_session(config={"agent": AGENT, **config})


async def test_knowledge_info_card_shows_the_answer_text_it_comes_with(
    backend: DialogflowBackend, fake: FakeDialogflow, cx_session: Callable[..., BotSession]
) -> None:
    messages = [
        official("v3", {"text": {"text": ["We open at 9 on weekdays."]}, "responseType": "HANDLER_PROMPT"}),
        official("v3", {"knowledgeInfoCard": {}}),
    ]
    fake.rule("hours", messages=messages)
    session = cx_session()
    assert await backend.send(session, _message(session, "hours?")) == [Reply(text="We open at 9 on weekdays.")]


async def test_a_lone_knowledge_info_card_falls_back_to_the_data_store_answer(
    backend: DialogflowBackend, fake: FakeDialogflow, cx_session: Callable[..., BotSession]
) -> None:
    signals = {"answer": "Returns are free within 30 days.", "rewrittenQuery": "return policy"}
    fake.rule(
        "returns", messages=[official("v3", {"knowledgeInfoCard": {}})], result={"dataStoreConnectionSignals": signals}
    )
    session = cx_session()
    assert await backend.send(session, _message(session, "returns?")) == [
        Reply(text="Returns are free within 30 days.")
    ]
    # Without the card the signals are diagnostics, not something to say.
    fake.rule("diag", messages=[], result={"dataStoreConnectionSignals": signals})
    assert await backend.send(session, _message(session, "diag")) == []


async def test_channel_specific_responses_reach_only_their_channel(
    backend: DialogflowBackend, fake: FakeDialogflow, cx_session: Callable[..., BotSession]
) -> None:
    fake.rule(
        "opening",
        messages=[
            official("v3", {"text": {"text": ["See our opening hours at https://shop.test/hours"]}}),
            official("v3", {"channel": "sms", "text": {"text": ["Mon-Fri 9-17. Reply MORE for weekends."]}}),
        ],
    )
    for channel, expected in [
        ("sms", "Mon-Fri 9-17. Reply MORE for weekends."),
        (None, "See our opening hours at https://shop.test/hours"),
        ("whatsapp", "See our opening hours at https://shop.test/hours"),  # no messages of its own
    ]:
        session = cx_session(**({"channel": channel} if channel else {}))
        replies = await backend.send(session, _message(session, "opening hours"))
        assert [r.text for r in replies] == [expected], channel
        assert fake.calls[-1].body.get("queryParams", {}).get("channel") == channel


# --- any official shape ----------------------------------------------------------------

STRUCTURE = ("{", "}", "[", "]", '"', "'", "None", "True", "False")


def titles(kind: str, body: dict[str, Any]) -> list[str]:
    """What a user must see of a message: its title, its items' titles, a medium's name."""
    items = body.get("items", []) if kind != "mediaContent" else body.get("mediaObjects", [])
    own = [body.get("title", "")] if kind in ("basicCard", "listSelect", "tableCard") else []
    item_titles = [item.get("title" if kind != "mediaContent" else "name", "") for item in items]
    return [t.strip() for t in [*own, *item_titles] if t.strip()]


@given(
    st.sampled_from(sorted(RICH_KINDS)).flatmap(lambda k: st.tuples(st.just(k), oracle.instances("v2", RICH_KINDS[k])))
)
def test_any_official_rich_message_shows_its_titles_and_never_structure(case: tuple[str, dict[str, Any]]) -> None:
    kind, body = case
    message = official("v2", {kind: body})
    replies = es_replies({"queryResult": {"fulfillmentMessages": [message]}})
    text = shown(replies)
    for title in titles(kind, body):
        assert title in text
    assert not any(mark in text for mark in STRUCTURE), text
    assert all(o.label.strip() and o.value.strip() for r in replies for o in r.options)
    assert all(m.url.startswith("https://") for r in replies for m in r.media)


@given(oracle.instances("v2", ES_MESSAGE))
def test_any_official_intent_message_renders_without_structure(message: dict[str, Any]) -> None:
    official("v2", message)
    for platform in (None, "FACEBOOK"):
        text = shown(es_replies({"queryResult": {"fulfillmentMessages": [message]}}, platform))
        assert not any(mark in text for mark in STRUCTURE), text


@given(st.lists(oracle.instances("v3", CX_MESSAGE), max_size=4))
def test_any_official_cx_messages_render_their_text_and_never_structure(messages: list[dict[str, Any]]) -> None:
    for message in messages:
        official("v3", message)
    text = shown(cx_replies({"queryResult": {"responseMessages": messages}}))
    assert not any(mark in text for mark in STRUCTURE), text
    for message in messages:
        if "payload" not in message:  # one message, one kind: payload is read before text
            for line in message.get("text", {}).get("text", []):
                assert line.strip() in text
