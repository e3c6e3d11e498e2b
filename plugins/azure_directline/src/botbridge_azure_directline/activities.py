"""Direct Line activities as botbridge replies.

Pure functions over the JSON the service returns, so they can be tested on
any input: a malformed activity yields nothing rather than an exception.
"""

from __future__ import annotations

import json
from typing import Any

from botbridge.models import Media, Option, Reply

HERO_CARD = "application/vnd.microsoft.card.hero"
THUMBNAIL_CARD = "application/vnd.microsoft.card.thumbnail"
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
CARDS_WITH_BUTTONS = frozenset({HERO_CARD, THUMBNAIL_CARD})

# Card actions that send something back to the bot: they become options.
ANSWER_ACTIONS = frozenset({"imBack", "postBack", "messageBack"})
# Card actions that point somewhere: shown as "title: value" lines.
LINK_ACTIONS = frozenset({"openUrl", "call", "downloadFile", "playAudio", "playVideo", "showImage", "signin"})


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


def action_option(action: dict[str, Any]) -> Option | None:
    """An imBack/postBack/messageBack action as an option: label=title, value=value or text."""
    if action.get("type") not in ANSWER_ACTIONS:
        return None
    if action.get("type") == "messageBack" and action.get("value") is not None:
        text = _text(action.get("text")) or None
        label = _text(action.get("title")) or _text(action.get("displayText")) or text
        if not label:
            return None
        encoded = json.dumps({"text": text, "value": action["value"]}, separators=(",", ":"), sort_keys=True)
        return Option(label=label, value=MESSAGE_BACK + encoded)
    raw_value = action.get("value")
    if isinstance(raw_value, str) and raw_value.strip():
        value = raw_value.strip()
    elif _text(action.get("text")):
        value = _text(action.get("text"))
    elif isinstance(raw_value, (dict, list, int, float)) and not isinstance(raw_value, bool):
        value = json.dumps(raw_value, separators=(",", ":"), sort_keys=True)
    else:
        value = _text(action.get("title"))
    label = _text(action.get("title")) or _text(action.get("displayText")) or value
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


def _adaptive_texts(element: Any, out: list[str], depth: int = 0) -> None:
    """The TextBlock texts of an adaptive card, in document order (bounded depth)."""
    if depth > 16:
        return
    if isinstance(element, list):
        for item in element:
            _adaptive_texts(item, out, depth + 1)
        return
    if not isinstance(element, dict):
        return
    if element.get("type") == "TextBlock" and _text(element.get("text")):
        out.append(_text(element.get("text")))
    for key in ("body", "items", "columns"):
        if key in element:
            _adaptive_texts(element[key], out, depth + 1)


def _card(content_type: str, content: dict[str, Any], texts: list[str], media: list[Media], actions: list[Any]) -> None:
    if content_type in CARDS_WITH_BUTTONS:
        texts.extend(t for t in (_text(content.get(k)) for k in ("title", "subtitle", "text")) if t)
        for image in _items(content.get("images")):
            url = web_url(image.get("url"))
            if url:
                media.append(Media(url=url, content_type="image/*", caption=_text(image.get("alt")) or None))
        actions.extend(_items(content.get("buttons")))
    elif content_type == ADAPTIVE_CARD:
        _adaptive_texts(content.get("body"), texts)
        for action in _items(content.get("actions")):
            if action.get("type") == "Action.OpenUrl":
                actions.append({"type": "openUrl", "title": action.get("title"), "value": action.get("url")})


def activity_reply(activity: Any) -> Reply | None:
    """One bot `message` activity as a Reply; None when it carries nothing to show."""
    if not isinstance(activity, dict) or activity.get("type") != "message":
        return None
    texts: list[str] = [_text(activity.get("text"))] if _text(activity.get("text")) else []
    media: list[Media] = []
    actions: list[Any] = []
    for attachment in _items(activity.get("attachments")):
        content_type = _text(attachment.get("contentType"))
        url = web_url(attachment.get("contentUrl"))
        if url:
            media.append(
                Media(url=url, content_type=content_type or None, caption=_text(attachment.get("name")) or None)
            )
        elif _text(attachment.get("contentUrl")):
            if _text(attachment.get("name")):  # inline content (data: URI): only its name can be shown
                texts.append(_text(attachment.get("name")))
        elif content_type:
            _card(content_type, _mapping(attachment.get("content")), texts, media, actions)
    actions.extend(_items(_mapping(activity.get("suggestedActions")).get("actions")))
    options: list[Option] = []
    for action in actions:
        option = action_option(action)
        if option is not None:
            options.append(option)
            continue
        link = action_link(action)
        if link is not None:
            texts.append(link)
    if not texts and not media and not options:
        return None
    return Reply(text="\n".join(texts), media=media, options=options)


def sender_id(activity: dict[str, Any]) -> str | None:
    sender = activity.get("from")
    if isinstance(sender, dict) and isinstance(sender.get("id"), str):
        return str(sender["id"])
    return None


def bot_replies(activities: list[dict[str, Any]], user_id: str) -> list[Reply]:
    """The replies among activities, leaving out our own user's echoes and non-messages."""
    replies = []
    for activity in activities:
        if sender_id(activity) == user_id:
            continue
        reply = activity_reply(activity)
        if reply is not None:
            replies.append(reply)
    return replies
