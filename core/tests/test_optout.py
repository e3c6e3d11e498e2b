"""STOP, START and HELP before the bot: opt-outs per sender and contact."""

from __future__ import annotations

import asyncio
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botbridge.channel import Capabilities
from botbridge.errors import ConfigInvalid
from botbridge.optout import DEFAULT_HELP, DEFAULT_START, DEFAULT_STOP, OptOutConfig, normalize, validate

from .test_engine import World, make_world

pytestmark = pytest.mark.anyio
CONTACT = "+15550177"


@pytest.fixture
async def world(tmp_path: Any) -> Any:
    async with make_world(tmp_path) as w:
        yield w


async def settled(world: World) -> None:
    await asyncio.wait_for(world.rt.engine.idle(), 10)


def texts_to(world: World, contact: str) -> list[str]:
    return [m["text"] for m in world.channel.outbox if m["to"] == contact]


# --- matching ---

SETTINGS = OptOutConfig()


@pytest.mark.parametrize("text", ["STOP", "stop", "  Stop!  ", "S.T.O.P", "stop\n", "OptOut", "opt-out", "Revoke."])
def test_whole_message_keywords_match_whatever_the_case_spaces_and_punctuation(text: str) -> None:
    assert SETTINGS.classify(text) == "stop"


@pytest.mark.parametrize("text", ["please stop", "stop it", "stopped", "", "!!!", "don't stop me now"])
def test_a_keyword_inside_a_sentence_is_not_one(text: str) -> None:
    assert SETTINGS.classify(text) is None


def test_start_and_help_words() -> None:
    assert [SETTINGS.classify(w) for w in ("start", "Unstop", "SUBSCRIBE", "help", "info?")] == [
        "start",
        "start",
        "start",
        "help",
        "help",
    ]


@given(
    keyword=st.sampled_from([*DEFAULT_STOP, *DEFAULT_START, *DEFAULT_HELP]),
    noise=st.lists(st.sampled_from(list(" \t\n.!?,;:-'\"*")), max_size=6),
    flips=st.lists(st.booleans(), min_size=20, max_size=20),
)
def test_any_casing_and_punctuation_around_a_keyword_still_matches(keyword: str, noise: list[str], flips: Any) -> None:
    cased = "".join(c.lower() if flip else c for c, flip in zip(keyword, flips, strict=False))
    text = "".join(noise[: len(noise) // 2]) + cased + "".join(noise[len(noise) // 2 :])
    expected = "stop" if keyword in DEFAULT_STOP else "start" if keyword in DEFAULT_START else "help"
    assert SETTINGS.classify(text) == expected


@given(st.text(alphabet=string.ascii_letters + " .!", max_size=30))
def test_only_a_whole_keyword_is_one(text: str) -> None:
    word = normalize(text)
    kind = SETTINGS.classify(text)
    assert (kind is not None) == (word in {*DEFAULT_STOP, *DEFAULT_START, *DEFAULT_HELP})


def test_on_by_default_where_carriers_require_it() -> None:
    assert SETTINGS.active(Capabilities(sms=True))
    assert SETTINGS.active(Capabilities(sms=False, carrier_compliance=True))  # RCS
    assert not SETTINGS.active(Capabilities(sms=False))  # WhatsApp, Messenger
    assert not OptOutConfig(enabled=False).active(Capabilities(sms=True))
    assert OptOutConfig(enabled=True).active(Capabilities(sms=False))


def test_config_is_checked_and_keywords_normalized() -> None:
    saved = validate({"opt_out": {"stop_keywords": ["Arrêt", " stop "], "help_text": "Call 555"}})
    assert saved["opt_out"] == {"stop_keywords": ["ARRÊT", "STOP"], "help_text": "Call 555"}
    for bad, field in [
        ({"opt_out": "yes"}, "config.opt_out"),
        ({"opt_out": {"enabled": "maybe"}}, "config.opt_out.enabled"),
        ({"opt_out": {"stop_keywords": ["!!"]}}, "config.opt_out.stop_keywords"),
        ({"opt_out": {"stop_text": ""}}, "config.opt_out.stop_text"),
        ({"opt_out": {"stop_txt": "typo"}}, "config.opt_out.stop_txt"),
    ]:
        with pytest.raises(ConfigInvalid) as caught:
            validate(bad)
        assert caught.value.field == field


# --- end to end ---


async def test_stop_confirms_once_keeps_the_bot_out_and_start_restores(world: World) -> None:
    await world.mo("hello", contact=CONTACT)
    await world.until(lambda: texts_to(world, CONTACT) == ["echo: hello"])
    await world.mo("Stop.", contact=CONTACT)
    await world.until(lambda: len(texts_to(world, CONTACT)) == 2)
    await settled(world)
    assert texts_to(world, CONTACT)[1].startswith("You are unsubscribed")
    assert [text for _, text in world.bot.seen] == ["hello"]  # the bot never saw STOP
    [opted] = world.subscriber.of_type("contact_opted_out")
    assert opted["event"]["fld-val-list"]["from_address"] == CONTACT
    assert opted["event"]["fld-val-list"]["keyword"] == "STOP"

    # a second STOP is not answered again; anything else goes no further than the history
    await world.mo("STOP", contact=CONTACT)
    await world.mo("are you there?", contact=CONTACT)
    await settled(world)
    assert len(texts_to(world, CONTACT)) == 2 and [t for _, t in world.bot.seen] == ["hello"]
    dropped = world.subscriber.of_type("mo_message_dropped")
    assert dropped[-1]["event"]["fld-val-list"]["reason_description"].startswith("the contact opted out")

    # the API refuses to send to them, and says why
    refused = await world.client.post(
        "/v1/messages", json={"sender_id": world.sender_id, "to": CONTACT, "text": "promo"}
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "contact_opted_out"
    listed = (await world.client.get("/v1/opt-outs", params={"sender_id": world.sender_id})).json()["items"]
    assert [(o["contact"], o["keyword"]) for o in listed] == [(CONTACT, "STOP")]

    # HELP is answered without the bot, even now
    await world.mo("help", contact=CONTACT)
    await world.until(lambda: len(texts_to(world, CONTACT)) == 3)
    assert texts_to(world, CONTACT)[2] == OptOutConfig().help_text

    await world.mo("START", contact=CONTACT)
    await world.until(lambda: len(texts_to(world, CONTACT)) == 4)
    assert texts_to(world, CONTACT)[3].startswith("You are subscribed again")
    assert len(world.subscriber.of_type("contact_opted_in")) == 1
    await world.mo("back", contact=CONTACT)
    await world.until(lambda: texts_to(world, CONTACT)[-1] == "echo: back")
    assert (await world.client.get("/v1/opt-outs")).json()["items"] == []


async def test_a_reply_made_after_the_stop_is_suppressed_with_a_reason(world: World) -> None:
    await world.mo("hello", contact=CONTACT)
    await world.until(lambda: len(texts_to(world, CONTACT)) == 1)
    await world.mo("STOP", contact=CONTACT)
    await world.until(lambda: len(texts_to(world, CONTACT)) == 2)
    await settled(world)
    # a late reply (an asynchronous bot) for the conversation that was open before the STOP
    [conversation] = (await world.client.get("/v1/conversations", params={"contact": CONTACT})).json()["items"]
    stored = await world.rt.store.get_conversation_by_id(conversation["id"])
    sender = await world.rt.store.get_sender(world.sender_id)
    connector = await world.rt.store.get_connector(world.connector_id)
    from botbridge.models import Reply

    deliver = world.rt.engine.turns.late_replies(sender, connector, stored)
    await deliver([Reply(text="one more thing")])
    await settled(world)
    assert len(texts_to(world, CONTACT)) == 2  # nothing went out
    items = (await world.client.get(f"/v1/conversations/{conversation['id']}/messages")).json()["items"]
    suppressed = [i["message"] for i in items if i["type"] == "mt" and i["message"]["text"] == "one more thing"]
    assert [(m["state"], m["reason_code"]) for m in suppressed] == [("FAILED", "opted_out")]
    # the STOP and its confirmation are in the conversation's timeline too
    assert [i.get("text") for i in items if i["type"] == "mo"] == ["hello", "STOP"]


async def test_an_operator_can_opt_a_contact_out_and_back_in(world: World) -> None:
    created = await world.client.post("/v1/opt-outs", json={"sender_id": world.sender_id, "contact": CONTACT})
    assert created.status_code == 201 and created.json()["keyword"] == "api"
    again = await world.client.post("/v1/opt-outs", json={"sender_id": world.sender_id, "contact": CONTACT})
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    refused = await world.client.post("/v1/messages", json={"sender_id": world.sender_id, "to": CONTACT, "text": "x"})
    assert refused.status_code == 409
    await settled(world)
    assert len(world.subscriber.of_type("contact_opted_out")) == 1 and world.channel.outbox == []

    removed = await world.client.delete(f"/v1/opt-outs/{world.sender_id}/{CONTACT}")
    assert removed.status_code == 204
    assert (await world.client.delete(f"/v1/opt-outs/{world.sender_id}/{CONTACT}")).status_code == 404
    sent = await world.client.post("/v1/messages", json={"sender_id": world.sender_id, "to": CONTACT, "text": "x"})
    assert sent.status_code == 202
    await settled(world)
    assert len(world.subscriber.of_type("contact_opted_in")) == 1 and texts_to(world, CONTACT) == ["x"]


async def test_opt_outs_are_the_accounts_own(world: World) -> None:
    from .conftest import KEY_B

    await world.mo("STOP", contact=CONTACT)
    await world.until(lambda: len(texts_to(world, CONTACT)) == 1)
    async with world.client_of(KEY_B) as other:
        assert (await other.get("/v1/opt-outs")).json()["items"] == []
        assert (await other.delete(f"/v1/opt-outs/{world.sender_id}/{CONTACT}")).status_code == 404
        made = await other.post("/v1/opt-outs", json={"sender_id": world.sender_id, "contact": "+1"})
        assert made.status_code == 422 and "sender_id" in made.text
    assert len((await world.client.get("/v1/opt-outs")).json()["items"]) == 1


async def test_a_sender_that_turns_it_off_passes_keywords_to_the_bot(world: World) -> None:
    patched = await world.client.patch(
        f"/v1/senders/{world.sender_id}", json={"config": {"opt_out": {"enabled": False}}}
    )
    assert patched.status_code == 200, patched.text
    world.rt.cache.clear()
    await world.mo("STOP", contact=CONTACT)
    await world.until(lambda: texts_to(world, CONTACT) == ["echo: STOP"])
    assert (await world.client.get("/v1/opt-outs")).json()["items"] == []


async def test_custom_keywords_and_texts(world: World) -> None:
    config = {"opt_out": {"stop_keywords": ["ARRET"], "stop_text": "C'est noté."}}
    assert (await world.client.patch(f"/v1/senders/{world.sender_id}", json={"config": config})).status_code == 200
    world.rt.cache.clear()
    await world.mo("Arret", contact=CONTACT)
    await world.until(lambda: texts_to(world, CONTACT) == ["C'est noté."])
    await world.mo("STOP", contact=CONTACT)  # no longer a keyword for this sender: the bot's, but they opted out
    await settled(world)
    assert texts_to(world, CONTACT) == ["C'est noté."] and world.bot.seen == []
    bad = await world.client.patch(f"/v1/senders/{world.sender_id}", json={"config": {"opt_out": {"help_text": ""}}})
    assert bad.status_code == 422 and "config.opt_out.help_text" in bad.text
