"""Rich content on a text channel: every card type, built with the Bot Framework's own classes.

The bot's activities come from the fake, made with botbuilder-schema's card
classes (`HeroCard(...).serialize()`), so the renderer meets the official
shapes; what the user sees is core's text rendering of the replies.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    AnimationCard,
    Attachment,
    AttachmentLayoutTypes,
    AudioCard,
    CardAction,
    CardImage,
    Fact,
    HeroCard,
    MediaUrl,
    OAuthCard,
    ReceiptCard,
    ReceiptItem,
    SigninCard,
    SuggestedActions,
    ThumbnailCard,
    ThumbnailUrl,
    VideoCard,
)
from hypothesis import given
from hypothesis import strategies as st
from msrest.serialization import Model

from botbridge import BotSession, Connector, Conversation, Reply
from botbridge.clock import FakeClock
from botbridge.render import as_text
from botbridge.testing.bots import inbound
from botbridge_azure_directline import DirectLineBot, activity_replies
from botbridge_azure_directline import activities as a
from botbridge_azure_directline.activities import message_back
from botbridge_azure_directline.testing import FAKE_BASE_URL, FakeDirectLine

from .oracle import ActivityOracle

pytestmark = pytest.mark.anyio


def message(
    *cards: tuple[str, Model | dict[str, Any]],
    text: str | None = None,
    layout: str | None = None,
    suggested: list[CardAction] | None = None,
) -> dict[str, Any]:
    """A bot's message activity as botbuilder-schema serializes it."""
    attachments = [
        Attachment(content_type=kind, content=card.serialize() if isinstance(card, Model) else card)
        for kind, card in cards
    ]
    return Activity(
        type=ActivityTypes.message,
        text=text,
        attachments=attachments or None,
        attachment_layout=layout,
        suggested_actions=SuggestedActions(actions=suggested) if suggested else None,
    ).serialize()


def seen(replies: list[Reply]) -> list[str]:
    """What a text-only channel shows, one string per message."""
    return [as_text(reply) for reply in replies]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeDirectLine:
    return FakeDirectLine(clock=clock)


@pytest.fixture
async def bot(fake: FakeDirectLine, clock: FakeClock) -> AsyncIterator[DirectLineBot]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
        instance = DirectLineBot(http, clock)
        yield instance
        await instance.aclose()


@pytest.fixture
async def session(bot: DirectLineBot, clock: FakeClock) -> BotSession:
    # late_reply_window 0: no poller, each turn reads its own replies only
    connector = Connector(
        account_id="acct",
        type="AZURE_BOT_DIRECT_LINE",
        sender_id="snd1",
        config={"base_url": FAKE_BASE_URL, "late_reply_window": 0},
    )
    conversation = Conversation(
        sender_id="snd1",
        contact="+15551234567",
        connector_id=connector.id,
        opened_at=clock.now(),
        last_mo_at=clock.now(),
    )
    opened = BotSession(connector=connector, credentials=FakeDirectLine().secret, conversation=conversation)
    await bot.open(opened)
    return opened


async def bot_shows(bot: DirectLineBot, session: BotSession, fake: FakeDirectLine, *activities: Any) -> list[Reply]:
    fake.add_rule("show", *activities)
    return await bot.send(session, inbound(session, "show"))


# --- one card of each type -------------------------------------------------------------------

ADAPTIVE = {
    "type": "AdaptiveCard",
    "version": "1.5",
    "body": [
        {"type": "TextBlock", "text": "Your order", "weight": "Bolder"},
        {
            "type": "RichTextBlock",
            "inlines": [{"type": "TextRun", "text": "Ships "}, {"type": "TextRun", "text": "today", "italic": True}],
        },
        {"type": "Image", "url": "https://img.example/box.png", "altText": "the box"},
        {"type": "FactSet", "facts": [{"title": "Order", "value": "1234"}, {"title": "Items", "value": "2"}]},
        {
            "type": "ColumnSet",
            "columns": [{"type": "Column", "items": [{"type": "TextBlock", "text": "Inside a column"}]}],
        },
        {"type": "Input.Text", "id": "note", "placeholder": "a note"},
        {
            "type": "ActionSet",
            "actions": [{"type": "Action.Submit", "title": "Track", "data": {"action": "track", "order": 1234}}],
        },
    ],
    "actions": [
        {"type": "Action.Submit", "title": "Cancel", "data": "cancel order 1234"},
        {"type": "Action.OpenUrl", "title": "Details", "url": "https://shop.example/orders/1234"},
        {"type": "Action.ShowCard", "title": "More", "card": {"type": "AdaptiveCard", "body": []}},
    ],
}

CARD_CASES: dict[str, tuple[str, Model | dict[str, Any], str, list[tuple[str, str | None]]]] = {
    # id: (content type, card, what a text channel shows, media (url, content type))
    "hero": (
        a.HERO_CARD,
        HeroCard(
            title="Plans",
            subtitle="Pick one",
            text="All plans include support.",
            images=[CardImage(url="https://img.example/plans.png", alt="the plans")],
            buttons=[
                CardAction(type="imBack", title="Basic", value="basic"),
                CardAction(type="openUrl", title="Compare", value="https://shop.example/plans"),
            ],
            tap=CardAction(type="openUrl", value="https://shop.example"),
        ),
        "Plans\nPick one\nAll plans include support.\nCompare: https://shop.example/plans\n"
        "Plans: https://shop.example\n1. Basic\nReply with a number.\nthe plans: https://img.example/plans.png",
        [("https://img.example/plans.png", "image/*")],
    ),
    "thumbnail with a tap that answers": (
        a.THUMBNAIL_CARD,
        ThumbnailCard(title="Espresso", text="Strong", tap=CardAction(type="imBack", value="order espresso")),
        "Espresso\nStrong\n1. Espresso\nReply with a number.",
        [],
    ),
    "animation": (
        a.ANIMATION_CARD,
        AnimationCard(title="Celebrate", media=[MediaUrl(url="https://media.example/party.gif")]),
        "Celebrate\nhttps://media.example/party.gif",
        [("https://media.example/party.gif", "image/gif")],
    ),
    "audio": (
        a.AUDIO_CARD,
        AudioCard(
            title="Episode 12",
            subtitle="The one with the cards",
            media=[MediaUrl(url="https://media.example/ep12.mp3")],
            buttons=[CardAction(type="postBack", title="Next episode", value="episode 13")],
        ),
        "Episode 12\nThe one with the cards\n1. Next episode\nReply with a number.\nhttps://media.example/ep12.mp3",
        [("https://media.example/ep12.mp3", "audio/mpeg")],
    ),
    "video": (
        a.VIDEO_CARD,
        VideoCard(
            title="How to reset your router",
            text="Two minutes",
            image=ThumbnailUrl(url="https://media.example/poster.jpg"),
            media=[
                MediaUrl(url="https://media.example/reset", profile="hd"),
                MediaUrl(url="https://media.example/reset-sd.mp4", profile="sd"),  # the same video: not sent twice
            ],
        ),
        "How to reset your router\nTwo minutes\nhttps://media.example/reset",
        [("https://media.example/reset", "video/*")],
    ),
    "video without a playable url shows its image": (
        a.VIDEO_CARD,
        VideoCard(
            title="Preview",
            image=ThumbnailUrl(url="https://media.example/poster.jpg", alt="poster"),
            media=[MediaUrl(url="data:video/mp4;base64,AAAA")],
        ),
        "Preview\nposter: https://media.example/poster.jpg",
        [("https://media.example/poster.jpg", "image/*")],
    ),
    "receipt": (
        a.RECEIPT_CARD,
        ReceiptCard(
            title="Receipt",
            facts=[Fact(key="Order", value="1234")],
            items=[
                ReceiptItem(title="Coffee", quantity="2", price="$6.00"),
                ReceiptItem(title="Muffin", subtitle="blueberry", price="$3.50"),
            ],
            tax="$0.95",
            total="$10.45",
            buttons=[CardAction(type="openUrl", title="Invoice", value="https://shop.example/invoice/1234")],
        ),
        "Receipt\nOrder: 1234\n2 x Coffee: $6.00\nMuffin - blueberry: $3.50\nTax: $0.95\nTotal: $10.45\n"
        "Invoice: https://shop.example/invoice/1234",
        [],
    ),
    "sign-in": (
        a.SIGNIN_CARD,
        SigninCard(
            text="Please sign in to see your orders",
            buttons=[CardAction(type="signin", title="Sign in", value="https://login.example/authorize?x=1")],
        ),
        "Please sign in to see your orders\nSign in: https://login.example/authorize?x=1",
        [],
    ),
    "oauth": (
        a.OAUTH_CARD,
        OAuthCard(
            text="Sign in to Contoso",
            connection_name="contoso-aad",
            buttons=[CardAction(type="signin", title="Sign in", value="https://token.botframework.com/api/oauth/x")],
        ),
        "Sign in to Contoso\nSign in: https://token.botframework.com/api/oauth/x",
        [],
    ),
    "adaptive": (
        a.ADAPTIVE_CARD,
        ADAPTIVE,
        "Your order\nShips today\nOrder: 1234\nItems: 2\nInside a column\n"
        "Details: https://shop.example/orders/1234\n1. Track\n2. Cancel\nReply with a number.\n"
        "the box: https://img.example/box.png",
        [("https://img.example/box.png", "image/*")],
    ),
}


@pytest.mark.parametrize("case", CARD_CASES.values(), ids=CARD_CASES.keys())
async def test_each_card_type_reads_sensibly_on_a_text_channel(
    bot: DirectLineBot,
    session: BotSession,
    fake: FakeDirectLine,
    activity_oracle: ActivityOracle,
    case: tuple[str, Model | dict[str, Any], str, list[tuple[str, str | None]]],
) -> None:
    kind, card, shown, media = case
    (reply,) = await bot_shows(bot, session, fake, message((kind, card), text=None))
    assert seen([reply]) == [shown]
    assert [(m.url, m.content_type) for m in reply.media] == media
    assert activity_oracle.checked["read"] >= 2  # the card reached us as botbuilder-schema shaped it


async def test_the_activitys_text_comes_before_its_card(
    bot: DirectLineBot, session: BotSession, fake: FakeDirectLine
) -> None:
    card = VideoCard(title="Intro", media=[MediaUrl(url="https://media.example/intro.mp4")])
    replies = await bot_shows(bot, session, fake, message((a.VIDEO_CARD, card), text="Watch this first"))
    assert seen(replies) == ["Watch this first\nIntro\nhttps://media.example/intro.mp4"]
    assert replies[0].media[0].content_type == "video/mp4"


async def test_card_buttons_answer_with_their_values(
    bot: DirectLineBot, session: BotSession, fake: FakeDirectLine
) -> None:
    (reply,) = await bot_shows(bot, session, fake, message((a.ADAPTIVE_CARD, ADAPTIVE)))
    track, cancel = reply.options
    assert message_back(track.value) == (None, {"action": "track", "order": 1234})
    assert cancel.value == "cancel order 1234"  # string data goes back as the text


async def test_choosing_an_adaptive_submit_posts_its_data_as_the_activity_value(
    bot: DirectLineBot, session: BotSession, fake: FakeDirectLine, activity_oracle: ActivityOracle
) -> None:
    (offer,) = await bot_shows(bot, session, fake, message((a.ADAPTIVE_CARD, ADAPTIVE)))
    choice = offer.options[0].value
    picked = inbound(session, "1", 1).model_copy(update={"postback": choice})
    (answer,) = await bot.send(session, picked)
    assert answer.text == 'value {"action": "track", "order": 1234} with text None'
    posted = activity_oracle.posted[-1]  # as the Bot Framework's Activity model reads it
    assert posted.value == {"action": "track", "order": 1234} and posted.text is None
    assert posted.from_property.id == session.state["user_id"]


async def test_a_postback_with_an_object_value_sends_the_object_and_never_shows_it(
    bot: DirectLineBot, session: BotSession, fake: FakeDirectLine, activity_oracle: ActivityOracle
) -> None:
    buttons = [
        CardAction(type="postBack", title="Add to cart", value={"sku": "A-1", "qty": 1}),
        CardAction(type="postBack", value={"sku": "hidden"}),  # nothing to label it with
    ]
    (offer,) = await bot_shows(bot, session, fake, message((a.HERO_CARD, HeroCard(title="Mug", buttons=buttons))))
    assert seen([offer]) == ["Mug\n1. Add to cart\nReply with a number."]
    picked = inbound(session, "1", 1).model_copy(update={"postback": offer.options[0].value})
    await bot.send(session, picked)
    assert activity_oracle.posted[-1].value == {"sku": "A-1", "qty": 1}


async def test_a_carousel_is_one_reply_per_card_in_order_with_the_suggestions_last(
    bot: DirectLineBot, session: BotSession, fake: FakeDirectLine
) -> None:
    cards = [
        (a.HERO_CARD, HeroCard(title=name, buttons=[CardAction(type="imBack", title="Choose", value=f"plan {name}")]))
        for name in ("Basic", "Pro", "Team")
    ]
    human = CardAction(type="imBack", title="Talk to a human", value="agent")
    activity = message(*cards, text="Our plans", layout=AttachmentLayoutTypes.carousel, suggested=[human])
    replies = await bot_shows(bot, session, fake, activity)
    assert [r.text for r in replies] == ["Our plans", "Basic", "Pro", "Team"]
    assert [[o.value for o in r.options] for r in replies] == [[], ["plan Basic"], ["plan Pro"], ["plan Team", "agent"]]


async def test_a_list_layout_stays_one_reply(bot: DirectLineBot, session: BotSession, fake: FakeDirectLine) -> None:
    cards = [(a.HERO_CARD, HeroCard(title=name)) for name in ("Basic", "Pro")]
    replies = await bot_shows(bot, session, fake, message(*cards, text="Our plans", layout="list"))
    assert seen(replies) == ["Our plans\nBasic\nPro"]


async def test_unknown_content_types_show_nothing_but_keep_the_text(
    bot: DirectLineBot, session: BotSession, fake: FakeDirectLine
) -> None:
    connector_card = {"title": "Build failed", "sections": [{"facts": [{"name": "repo", "value": "x"}]}]}
    activity = message(
        ("application/vnd.microsoft.teams.card.o365connector", connector_card),
        ("application/vnd.microsoft.card.future", {"title": "From the future"}),
        text="Here is the status",
    )
    assert seen(await bot_shows(bot, session, fake, activity)) == ["Here is the status"]
    assert await bot_shows(bot, session, fake, message(("application/x-unknown", {"a": 1}))) == []


# --- properties ----------------------------------------------------------------------------------

# Card strings without JSON's characters, so any "{", "[" or '"' in what is shown is JSON leaking out.
plain = st.text(st.characters(codec="ascii", exclude_characters='{}[]"\\', exclude_categories=("Cc",)), max_size=20)
words = plain.filter(str.strip)
urls = st.builds("https://example.com/{}".format, st.text("abcdefgh0123456789", min_size=1, max_size=8))
json_ish = st.dictionaries(words, words | st.integers(), max_size=3)
actions = st.builds(
    CardAction,
    type=st.sampled_from(["imBack", "postBack", "messageBack", "openUrl", "signin", "call", "showImage"]),
    title=st.none() | plain,
    text=st.none() | plain,
    display_text=st.none() | plain,
    value=st.none() | words | urls | json_ish,
    channel_data=st.none() | json_ish,
)
images = st.builds(CardImage, url=urls | plain, alt=st.none() | plain, tap=st.none() | actions)
media_urls = st.lists(st.builds(MediaUrl, url=urls | plain, profile=st.none() | plain), max_size=2)
buttons = st.none() | st.lists(actions, max_size=4)
common = {"subtitle": st.none() | plain, "text": st.none() | plain, "buttons": buttons}
media_card = {**common, "media": media_urls, "image": st.none() | st.builds(ThumbnailUrl, url=urls, alt=plain)}
titled_cards = st.one_of(
    st.tuples(st.just(a.HERO_CARD), st.builds(HeroCard, title=words, images=st.lists(images, max_size=2), **common)),
    st.tuples(st.just(a.THUMBNAIL_CARD), st.builds(ThumbnailCard, title=words, tap=st.none() | actions, **common)),
    st.tuples(st.just(a.ANIMATION_CARD), st.builds(AnimationCard, title=words, value=json_ish, **media_card)),
    st.tuples(st.just(a.AUDIO_CARD), st.builds(AudioCard, title=words, **media_card)),
    st.tuples(st.just(a.VIDEO_CARD), st.builds(VideoCard, title=words, **media_card)),
    st.tuples(
        st.just(a.RECEIPT_CARD),
        st.builds(
            ReceiptCard,
            title=words,
            facts=st.lists(st.builds(Fact, key=plain, value=plain), max_size=3),
            items=st.lists(st.builds(ReceiptItem, title=plain, price=plain, quantity=plain), max_size=3),
            total=plain,
            buttons=st.lists(actions, max_size=2),
        ),
    ),
)
text_cards = st.one_of(  # sign-in cards have no title: their text is what must show
    st.tuples(st.just(a.SIGNIN_CARD), st.builds(SigninCard, text=words, buttons=st.lists(actions, max_size=3))),
    st.tuples(
        st.just(a.OAUTH_CARD),
        st.builds(OAuthCard, text=words, connection_name=plain, buttons=st.lists(actions, max_size=3)),
    ),
)


def shown_for(kind: str, card: Model, layout: str | None) -> str:
    activity = message((kind, card), (kind, card), layout=layout)
    return "\n".join(seen(activity_replies(json.loads(json.dumps(activity)))))


@given(card=titled_cards, layout=st.sampled_from([None, "list", "carousel"]))
def test_any_titled_card_shows_its_title_and_never_json(card: tuple[str, Model], layout: str | None) -> None:
    kind, model = card
    shown = shown_for(kind, model, layout)
    assert model.title.strip() in shown
    assert not any(c in shown for c in '{}[]"'), shown


@given(card=text_cards)
def test_any_sign_in_card_shows_its_text_and_never_json(card: tuple[str, Model]) -> None:
    kind, model = card
    shown = shown_for(kind, model, None)
    assert model.text.strip() in shown
    assert not any(c in shown for c in '{}[]"'), shown


adaptive_text = st.fixed_dictionaries({"type": st.just("TextBlock"), "text": words})
adaptive_elements = st.recursive(
    adaptive_text
    | st.fixed_dictionaries({"type": st.just("Image"), "url": urls | plain, "altText": plain})
    | st.fixed_dictionaries(
        {"type": st.just("FactSet"), "facts": st.lists(st.fixed_dictionaries({"title": plain, "value": plain}))}
    )
    | st.fixed_dictionaries(
        {"type": st.just("RichTextBlock"), "inlines": st.lists(plain | st.fixed_dictionaries({"text": plain}))}
    )
    | st.fixed_dictionaries({"type": st.sampled_from(["Input.Text", "Input.Toggle", "Future.Thing"]), "id": words}),
    lambda inner: (
        st.fixed_dictionaries({"type": st.just("Container"), "items": st.lists(inner, max_size=3)})
        | st.fixed_dictionaries(
            {
                "type": st.just("ColumnSet"),
                "columns": st.lists(st.fixed_dictionaries({"type": st.just("Column"), "items": st.lists(inner)})),
            }
        )
    ),
    max_leaves=8,
)
adaptive_actions = st.lists(
    st.fixed_dictionaries({"type": st.just("Action.Submit"), "title": plain, "data": st.none() | words | json_ish})
    | st.fixed_dictionaries({"type": st.just("Action.OpenUrl"), "title": plain, "url": urls})
    | st.fixed_dictionaries({"type": st.sampled_from(["Action.ToggleVisibility", "Action.Execute"]), "title": plain}),
    max_size=4,
)


@given(title=adaptive_text, body=st.lists(adaptive_elements, max_size=4), card_actions=adaptive_actions)
def test_any_adaptive_card_shows_its_first_text_block_and_never_json(
    title: dict[str, str], body: list[Any], card_actions: list[dict[str, Any]]
) -> None:
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [title, *body], "actions": card_actions}
    shown = "\n".join(seen(activity_replies(message((a.ADAPTIVE_CARD, card)))))
    assert shown.startswith(title["text"].strip())
    assert not any(c in shown for c in '{}[]"'), shown
    reply = activity_replies(message((a.ADAPTIVE_CARD, card)))[0]
    # a submit needs a label: its title, or the string it sends
    submits = [x for x in card_actions if x["type"] == "Action.Submit"]
    labels = [x["title"].strip() or (x["data"].strip() if isinstance(x["data"], str) else "") for x in submits]
    assert [o.label for o in reply.options] == [label for label in labels if label]


def test_the_bot_frameworks_handoff_activities_are_a_signal() -> None:
    for activity in ({"type": "handoff"}, {"type": "event", "name": "handoff.initiate", "value": {"skill": "billing"}}):
        assert activity_replies(activity) == [Reply(signals=["handoff"])]
    assert activity_replies({"type": "event", "name": "handoff.status"}) == []  # the status events are ours to send
    assert activity_replies({"type": "typing"}) == []
