"""Direct Line activities as botbridge replies.

Pure functions over the JSON the service returns, so they can be tested on
any input: a malformed activity yields nothing rather than an exception.

Cards follow the Bot Framework card schemas (HeroCard, ThumbnailCard,
AnimationCard, AudioCard, VideoCard, ReceiptCard, SigninCard, OAuthCard,
CardAction) and Adaptive Cards 1.5. Each content type has a small renderer
in `CARD_RENDERERS` (each Adaptive Card element type one in
`ADAPTIVE_ELEMENTS`) that adds lines of text, media and card actions to a
`Draft`; the actions then become numbered options (they answer the bot) or
`title: url` lines (they point somewhere). Only strings a card carries are
ever shown: a text channel never sees JSON. An unknown content type adds
nothing, and the activity's own text is kept.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from botbridge.models import Media, Option, Reply

HERO_CARD = "application/vnd.microsoft.card.hero"
THUMBNAIL_CARD = "application/vnd.microsoft.card.thumbnail"
ANIMATION_CARD = "application/vnd.microsoft.card.animation"
AUDIO_CARD = "application/vnd.microsoft.card.audio"
VIDEO_CARD = "application/vnd.microsoft.card.video"
RECEIPT_CARD = "application/vnd.microsoft.card.receipt"
SIGNIN_CARD = "application/vnd.microsoft.card.signin"
OAUTH_CARD = "application/vnd.microsoft.card.oauth"
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"

CAROUSEL = "carousel"  # Activity.attachmentLayout: each card is shown on its own

# Card actions that send something back to the bot: they become options.
ANSWER_ACTIONS = frozenset({"imBack", "postBack", "messageBack"})
# Card actions that point somewhere: shown as "title: value" lines.
LINK_ACTIONS = frozenset({"openUrl", "call", "downloadFile", "playAudio", "playVideo", "showImage", "signin"})

# Adaptive Cards nest elements this deep at most here: a hostile card cannot recurse us to death.
MAX_DEPTH = 16

# Python's built-in table only: /etc/mime.types differs from host to host.
_MIME = mimetypes.MimeTypes()


def web_url(value: Any) -> str:
    """The value if it is an http(s) URL: a data: or file: URI is no link a user can open."""
    url = _text(value)
    return url if url.lower().startswith(("http://", "https://")) else ""


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _media_type(url: str, kinds: tuple[str, ...], fallback: str) -> str:
    """The URL's media type when its extension names one of `kinds` ("video", "audio"), else `fallback`."""
    guessed, _ = _MIME.guess_type(urlsplit(url).path)
    return guessed if guessed and guessed.split("/")[0] in kinds else fallback


@dataclass
class Draft:
    """What one reply collects from an activity's text and cards, before actions are resolved."""

    texts: list[str] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)  # Bot Framework CardActions, in order

    def line(self, *values: Any) -> None:
        self.texts.extend(_text(value) for value in values if _text(value))

    def add_media(self, url: Any, content_type: str, caption: Any = None) -> None:
        link = web_url(url)
        if link:
            self.media.append(Media(url=link, content_type=content_type, caption=_text(caption) or None))

    def add_actions(self, actions: Any) -> None:
        self.actions.extend(_items(actions))

    def empty(self) -> bool:
        return not (self.texts or self.media or self.actions)

    def reply(self) -> Reply | None:
        texts, options = list(self.texts), list[Option]()
        for action in self.actions:
            option = action_option(action)
            if option is not None:
                options.append(option)
                continue
            link = action_link(action)
            if link is not None:
                texts.append(link)
        if not texts and not self.media and not options:
            return None
        return Reply(text="\n".join(texts), media=list(self.media), options=options)


# --- card actions ----------------------------------------------------------------

# A messageBack option's value: both the text and the value (any JSON) go
# back to the bot, so they travel together, encoded, as the option's value.
MESSAGE_BACK = "directline-messageBack:"


def message_back(value: str) -> tuple[str | None, Any] | None:
    """The (text, value) a chosen messageBack option sends; None for any other answer."""
    if not value.startswith(MESSAGE_BACK):
        return None
    try:
        data = json.loads(value[len(MESSAGE_BACK) :])
    except ValueError:
        return None
    if not isinstance(data, dict) or "value" not in data:
        return None
    text = data.get("text")
    return (text if isinstance(text, str) else None), data["value"]


def _encode_back(text: str | None, value: Any) -> str:
    return MESSAGE_BACK + json.dumps({"text": text, "value": value}, separators=(",", ":"), sort_keys=True)


def action_option(action: dict[str, Any]) -> Option | None:
    """An imBack/postBack/messageBack action as an option: label=title, value=value or text.

    A value that is not a string (a postBack's object, an Adaptive Card
    submit's data) goes back to the bot as the activity's `value`, as Web
    Chat sends it; the label is only ever a string the card shows.
    """
    kind = action.get("type")
    if kind not in ANSWER_ACTIONS:
        return None
    raw_value = action.get("value")
    text = _text(action.get("text"))
    label = _text(action.get("title")) or _text(action.get("displayText"))
    if kind == "messageBack" and raw_value is not None:
        label = label or text
        return Option(label=label, value=_encode_back(text or None, raw_value)) if label else None
    if isinstance(raw_value, str) and raw_value.strip():
        value = raw_value.strip()
    elif text:
        value = text
    elif isinstance(raw_value, dict | list):  # an object goes back as the activity's value
        return Option(label=label, value=_encode_back(None, raw_value)) if label else None
    elif isinstance(raw_value, int | float) and not isinstance(raw_value, bool):
        value = json.dumps(raw_value)
    else:
        value = label
    label = label or value
    if not label or not value:
        return None
    return Option(label=label, value=value)


def action_link(action: dict[str, Any]) -> str | None:
    if action.get("type") not in LINK_ACTIONS:
        return None
    value = action.get("value")
    if not isinstance(value, str) or not value.strip():
        return None
    title = _text(action.get("title"))
    return f"{title}: {value.strip()}" if title else value.strip()


def _add_tap(card: dict[str, Any], draft: Draft) -> None:
    """A card's `tap` (the whole card is the button) as one more action, titled like the card."""
    tap = _mapping(card.get("tap"))
    if not tap or any(a.get("type") == tap.get("type") and a.get("value") == tap.get("value") for a in draft.actions):
        return
    draft.actions.append({**tap, "title": _text(tap.get("title")) or _text(card.get("title"))})


# --- Bot Framework cards -------------------------------------------------------------

CardRenderer = Callable[[dict[str, Any], Draft], None]


def _rich_card(card: dict[str, Any], draft: Draft) -> None:
    """HeroCard, ThumbnailCard: title, subtitle, text, images, buttons, tap."""
    draft.line(card.get("title"), card.get("subtitle"), card.get("text"))
    for image in _items(card.get("images")):
        draft.add_media(image.get("url"), "image/*", image.get("alt"))
    draft.add_actions(card.get("buttons"))
    _add_tap(card, draft)


def _media_card(kinds: tuple[str, ...], fallback: str) -> CardRenderer:
    """AnimationCard, AudioCard, VideoCard: the media to play, else the card's image."""

    def render(card: dict[str, Any], draft: Draft) -> None:
        draft.line(card.get("title"), card.get("subtitle"), card.get("text"))
        # several media URLs are alternative formats of the same content: the first one that opens
        url = next((web_url(m.get("url")) for m in _items(card.get("media")) if web_url(m.get("url"))), "")
        if url:
            # the title is already a line of text: no caption repeating it
            draft.add_media(url, _media_type(url, kinds, fallback))
        else:
            image = _mapping(card.get("image"))
            draft.add_media(image.get("url"), "image/*", image.get("alt"))
        draft.add_actions(card.get("buttons"))

    return render


def _receipt_card(card: dict[str, Any], draft: Draft) -> None:
    """ReceiptCard, in the order Bot Framework channels show it: facts, items, tax, VAT, total."""
    draft.line(card.get("title"))
    for fact in _items(card.get("facts")):
        key, value = _text(fact.get("key")), _text(fact.get("value"))
        draft.line(f"{key}: {value}" if key and value else key or value)
    for item in _items(card.get("items")):
        name = " - ".join(t for t in (_text(item.get(k)) for k in ("title", "subtitle", "text")) if t)
        quantity, price = _text(item.get("quantity")), _text(item.get("price"))
        if quantity and name:
            name = f"{quantity} x {name}"  # ASCII: "×" would make an SMS UCS-2
        draft.line(f"{name}: {price}" if name and price else name or price)
    for label, key in (("Tax", "tax"), ("VAT", "vat"), ("Total", "total")):
        if _text(card.get(key)):
            draft.line(f"{label}: {_text(card.get(key))}")
    draft.add_actions(card.get("buttons"))
    _add_tap(card, draft)


def _signin_card(card: dict[str, Any], draft: Draft) -> None:
    """SigninCard, OAuthCard: the text and the sign-in link (a `signin` action's URL)."""
    draft.line(card.get("text"))
    draft.add_actions(card.get("buttons"))


# --- Adaptive Cards 1.5 --------------------------------------------------------------

ElementRenderer = Callable[[dict[str, Any], Draft], None]


def adaptive_action(action: dict[str, Any]) -> dict[str, Any] | None:
    """An Adaptive Card action as the Bot Framework CardAction it amounts to on a text channel.

    `Action.Submit` sends its `data` back: a string as the message text, an
    object as the activity's `value` (Web Chat does the same).
    """
    kind, title = action.get("type"), action.get("title")
    if kind == "Action.OpenUrl":
        return {"type": "openUrl", "title": title, "value": action.get("url")}
    if kind == "Action.Submit":
        data = action.get("data")
        if isinstance(data, str):
            return {"type": "imBack", "title": title, "value": data}
        return {"type": "messageBack", "title": title, "value": {} if data is None else data}
    return None  # ShowCard, ToggleVisibility, Execute: nothing a text reply can do


def _adaptive_actions(actions: Any, draft: Draft) -> None:
    for action in _items(actions):
        converted = adaptive_action(action)
        if converted is not None:
            draft.actions.append(converted)


def _adaptive_walk(elements: Any, draft: Draft, depth: int) -> None:
    """Elements in document order; containers (Container, ColumnSet, Column, Table…) by their children."""
    if depth > MAX_DEPTH:
        return
    for element in _items(elements):
        render = ADAPTIVE_ELEMENTS.get(_text(element.get("type")))
        if render is not None:
            render(element, draft)
        for key in ("items", "columns", "rows", "cells"):
            if key in element:
                _adaptive_walk(element[key], draft, depth + 1)


def _text_block(element: dict[str, Any], draft: Draft) -> None:
    draft.line(element.get("text"))


def _rich_text_block(element: dict[str, Any], draft: Draft) -> None:
    # TextRuns carry their own spacing: joined as they are, one line.
    runs = element.get("inlines")
    parts = [r if isinstance(r, str) else _mapping(r).get("text") for r in runs] if isinstance(runs, list) else []
    draft.line("".join(p for p in parts if isinstance(p, str)))


def _image(element: dict[str, Any], draft: Draft) -> None:
    draft.add_media(element.get("url"), "image/*", element.get("altText"))


def _image_set(element: dict[str, Any], draft: Draft) -> None:
    for image in _items(element.get("images")):
        _image(image, draft)


def _adaptive_media(element: dict[str, Any], draft: Draft) -> None:
    for source in _items(element.get("sources")):
        url = web_url(source.get("url"))
        if url:
            kind = _text(source.get("mimeType")) or _media_type(url, ("video", "audio"), "video/*")
            draft.add_media(url, kind, element.get("altText"))
            return
    draft.add_media(element.get("poster"), "image/*", element.get("altText"))


def _fact_set(element: dict[str, Any], draft: Draft) -> None:
    for fact in _items(element.get("facts")):
        title, value = _text(fact.get("title")), _text(fact.get("value"))
        draft.line(f"{title}: {value}" if title and value else title or value)


def _action_set(element: dict[str, Any], draft: Draft) -> None:
    _adaptive_actions(element.get("actions"), draft)


ADAPTIVE_ELEMENTS: dict[str, ElementRenderer] = {
    "TextBlock": _text_block,
    "RichTextBlock": _rich_text_block,
    "Image": _image,
    "ImageSet": _image_set,
    "Media": _adaptive_media,
    "FactSet": _fact_set,
    "ActionSet": _action_set,
}


def _adaptive_card(card: dict[str, Any], draft: Draft) -> None:
    before = len(draft.texts)
    _adaptive_walk(card.get("body"), draft, 0)
    _adaptive_actions(card.get("actions"), draft)
    if len(draft.texts) == before:
        # what hosts show when they cannot render the card (e.g. only inputs)
        draft.line(card.get("fallbackText"))


CARD_RENDERERS: dict[str, CardRenderer] = {
    HERO_CARD: _rich_card,
    THUMBNAIL_CARD: _rich_card,
    ANIMATION_CARD: _media_card(("image", "video"), "image/gif"),
    AUDIO_CARD: _media_card(("audio",), "audio/*"),
    VIDEO_CARD: _media_card(("video",), "video/*"),
    RECEIPT_CARD: _receipt_card,
    SIGNIN_CARD: _signin_card,
    OAUTH_CARD: _signin_card,
    ADAPTIVE_CARD: _adaptive_card,
}


# --- activities -------------------------------------------------------------------------


def _attachment(attachment: dict[str, Any], draft: Draft) -> None:
    content_type = _text(attachment.get("contentType"))
    url = web_url(attachment.get("contentUrl"))
    if url:
        draft.media.append(
            Media(url=url, content_type=content_type or None, caption=_text(attachment.get("name")) or None)
        )
    elif _text(attachment.get("contentUrl")):
        draft.line(attachment.get("name"))  # inline content (data: URI): only its name can be shown
    else:
        render = CARD_RENDERERS.get(content_type)
        if render is not None:
            render(_mapping(attachment.get("content")), draft)


# The Bot Framework's hand-off to a person: a `handoff` activity (ActivityTypes.handoff in
# botbuilder-schema) or the `handoff.initiate` event of the hand-off protocol.
HANDOFF_EVENT = "handoff.initiate"


def asks_handoff(activity: Any) -> bool:
    if not isinstance(activity, dict):
        return False
    kind = activity.get("type")
    return kind == "handoff" or (kind == "event" and activity.get("name") == HANDOFF_EVENT)


def activity_replies(activity: Any) -> list[Reply]:
    """One bot `message` activity as replies: one, or one per card of a carousel (after its text).

    A hand-off activity is a reply with nothing to show and the signal `handoff`.
    """
    if asks_handoff(activity):
        return [Reply(signals=["handoff"])]
    if not isinstance(activity, dict) or activity.get("type") != "message":
        return []
    attachments = _items(activity.get("attachments"))
    drafts = [Draft()]
    drafts[0].line(activity.get("text"))
    for attachment in attachments:
        if activity.get("attachmentLayout") == CAROUSEL and len(attachments) > 1 and not drafts[-1].empty():
            drafts.append(Draft())
        _attachment(attachment, drafts[-1])
    drafts = [d for d in drafts if not d.empty()] or [Draft()]
    # the activity's choices, not one card's: after the last card
    drafts[-1].add_actions(_mapping(activity.get("suggestedActions")).get("actions"))
    return [reply for reply in (d.reply() for d in drafts) if reply is not None]


def activity_reply(activity: Any) -> Reply | None:
    """The activity as one Reply (a carousel's cards merged in order); None when it shows nothing.

    For code that needs a single message; `activity_replies` keeps a carousel's cards apart.
    """
    replies = activity_replies(activity)
    if len(replies) <= 1:
        return replies[0] if replies else None
    return Reply(
        text="\n".join(r.text for r in replies if r.text),
        media=[m for r in replies for m in r.media],
        options=[o for r in replies for o in r.options],
    )


def sender_id(activity: dict[str, Any]) -> str | None:
    sender = activity.get("from")
    if isinstance(sender, dict) and isinstance(sender.get("id"), str):
        return str(sender["id"])
    return None


def bot_replies(activities: list[dict[str, Any]], user_id: str) -> list[Reply]:
    """The replies among activities, leaving out our own user's echoes and non-messages."""
    replies: list[Reply] = []
    for activity in activities:
        if sender_id(activity) != user_id:
            replies.extend(activity_replies(activity))
    return replies
