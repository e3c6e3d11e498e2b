"""Dialogflow responses as channel-neutral `Reply` objects.

ES: `queryResult.fulfillmentMessages` (every `IntentMessage` kind of the v2
discovery document except audio-only ones: text, quickReplies, card, image,
simpleResponses, suggestions, linkOutSuggestion, basicCard, listSelect,
carouselSelect, browseCarouselCard, tableCard, mediaContent, and payload with
Dialogflow Messenger `richContent`), falling back to
`queryResult.fulfillmentText`. CX: `queryResult.responseMessages` (text,
payload, knowledgeInfoCard; liveAgentHandoff and endInteraction as signals).
Anything else (audio, telephony) carries nothing a text channel can show and
is skipped. Input is untrusted: wrong types are ignored, never raised on, and
no structure is ever shown as JSON: only the strings of known fields are.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from typing import Any

from botbridge import Media, Option, Reply

UNSPECIFIED = "PLATFORM_UNSPECIFIED"
# A table card can be any size; a text message cannot.
MAX_TABLE_ROWS = 20
MAX_LINE = 300
# Option labels carry an item's description, cut short so a list stays a list.
MAX_DESCRIPTION_IN_LABEL = 80


def _str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_link(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def _joined(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _link_line(title: str, uri: str) -> str:
    return f"{title}: {uri}" if title and uri else title or uri


def _media(url: str, caption: str = "") -> list[Media]:
    # Only what a phone can open: a text channel turns media into links.
    return [Media(url=url, caption=caption or None)] if _is_link(url) else []


def _image_media(image: Any) -> list[Media]:
    image = _dict(image)
    return _media(_str(image.get("imageUri")), _str(image.get("accessibilityText")))


def _uri_buttons(buttons: Any) -> list[str]:
    """Actions on Google buttons only open a URI: they are links, never options to answer with."""
    lines = []
    for button in _list(buttons):
        button = _dict(button)
        line = _link_line(_str(button.get("title")), _str(_dict(button.get("openUriAction")).get("uri")))
        if line:
            lines.append(line)
    return lines


def _button(text: str, postback: str, options: list[Option], links: list[str]) -> None:
    """A button is an option to answer with, or a link when its postback is a URL."""
    if postback and _is_link(postback):
        links.append(f"{text}: {postback}" if text else postback)
    elif text or postback:
        options.append(Option(label=text or postback, value=postback or text))


def _reply(text: str = "", media: list[Media] | None = None, options: list[Option] | None = None) -> Reply | None:
    if not text and not media and not options:
        return None
    return Reply(text=text, media=media or [], options=options or [])


def _text_message(message: dict[str, Any]) -> Reply | None:
    lines = [_str(line) for line in _list(_dict(message.get("text")).get("text"))]
    return _reply(_joined(*lines))


def _quick_replies(message: dict[str, Any]) -> Reply | None:
    body = _dict(message.get("quickReplies"))
    options = [Option(label=_str(q), value=_str(q)) for q in _list(body.get("quickReplies")) if _str(q)]
    return _reply(_str(body.get("title")), options=options)


def _card(message: dict[str, Any]) -> Reply | None:
    card = _dict(message.get("card"))
    options: list[Option] = []
    links: list[str] = []
    for button in _list(card.get("buttons")):
        button = _dict(button)
        _button(_str(button.get("text")), _str(button.get("postback")), options, links)
    image = _str(card.get("imageUri"))
    media = [Media(url=image)] if image else []
    return _reply(_joined(_str(card.get("title")), _str(card.get("subtitle")), *links), media, options)


def _image(message: dict[str, Any]) -> Reply | None:
    image = _dict(message.get("image"))
    url = _str(image.get("imageUri"))
    if not url:
        return None
    return _reply(media=[Media(url=url, caption=_str(image.get("accessibilityText")) or None)])


def _simple_responses(message: dict[str, Any]) -> Reply | None:
    items = _list(_dict(message.get("simpleResponses")).get("simpleResponses"))
    lines = [_str(_dict(i).get("displayText")) or _str(_dict(i).get("textToSpeech")) for i in items]
    return _reply(_joined(*lines))


def _suggestions(message: dict[str, Any]) -> Reply | None:
    items = _list(_dict(message.get("suggestions")).get("suggestions"))
    titles = [_str(_dict(i).get("title")) for i in items]
    return _reply(options=[Option(label=t, value=t) for t in titles if t])


def _link_out(message: dict[str, Any]) -> Reply | None:
    link = _dict(message.get("linkOutSuggestion"))
    uri = _str(link.get("uri"))
    if not uri:
        return None
    name = _str(link.get("destinationName"))
    return _reply(f"{name}: {uri}" if name else uri)


def _plain(formatted: str) -> str:
    # basicCard.formattedText is Actions on Google's limited markdown: bold markers and
    # "two spaces + newline" breaks would show literally on SMS.
    return formatted.replace("**", "").replace("  \n", "\n")


def _basic_card(message: dict[str, Any]) -> Reply | None:
    card = _dict(message.get("basicCard"))
    text = _joined(
        _str(card.get("title")),
        _str(card.get("subtitle")),
        _plain(_str(card.get("formattedText"))),
        *_uri_buttons(card.get("buttons")),
    )
    return _reply(text, _image_media(card.get("image")))


def _select_options(items: Any) -> list[Option]:
    """List and carousel items as options answered with their key (`info.key`)."""
    options = []
    for item in _list(items):
        item = _dict(item)
        title = _str(item.get("title"))
        key = _str(_dict(item.get("info")).get("key"))
        description = _cut(_str(item.get("description")), MAX_DESCRIPTION_IN_LABEL)
        label = f"{title} – {description}" if title and description else title or description or key
        if label and (key or title):
            options.append(Option(label=label, value=key or title))
    return options


def _list_select(message: dict[str, Any]) -> Reply | None:
    select = _dict(message.get("listSelect"))
    text = _joined(_str(select.get("title")), _str(select.get("subtitle")))
    return _reply(text, options=_select_options(select.get("items")))


def _carousel_select(message: dict[str, Any]) -> Reply | None:
    return _reply(options=_select_options(_dict(message.get("carouselSelect")).get("items")))


def _browse_carousel(message: dict[str, Any]) -> Reply | None:
    # Every item opens a web page: a block of text with its link, one per item.
    blocks = []
    for item in _list(_dict(message.get("browseCarouselCard")).get("items")):
        item = _dict(item)
        url = _str(_dict(item.get("openUriAction")).get("url"))
        block = _joined(_str(item.get("title")), _str(item.get("description")), _str(item.get("footer")), url)
        if block:
            blocks.append(block)
    return _reply("\n\n".join(blocks))


def _table_row(cells: list[str]) -> str:
    if not any(cells):
        return ""
    return _cut(" | ".join(cell or "-" for cell in cells), MAX_LINE)


def _table_card(message: dict[str, Any]) -> Reply | None:
    table = _dict(message.get("tableCard"))
    header = _table_row([_str(_dict(c).get("header")) for c in _list(table.get("columnProperties"))])
    rows = [
        _table_row([_str(_dict(cell).get("text")) for cell in _list(_dict(row).get("cells"))])
        for row in _list(table.get("rows"))
    ]
    rows = [row for row in rows if row]
    if len(rows) > MAX_TABLE_ROWS:
        rows = [*rows[:MAX_TABLE_ROWS], f"… {len(rows) - MAX_TABLE_ROWS} more rows"]
    text = _joined(
        _str(table.get("title")), _str(table.get("subtitle")), header, *rows, *_uri_buttons(table.get("buttons"))
    )
    return _reply(text, _image_media(table.get("image")))


def _media_content(message: dict[str, Any]) -> Reply | None:
    # The audio is the content; its icon and cover image are decoration a text channel can do without.
    lines: list[str] = []
    media: list[Media] = []
    for item in _list(_dict(message.get("mediaContent")).get("mediaObjects")):
        item = _dict(item)
        lines.extend((_str(item.get("name")), _str(item.get("description"))))
        url = _str(item.get("contentUrl"))
        if _is_link(url):
            guessed = mimetypes.guess_type(url.split("?")[0])[0]
            media.append(Media(url=url, content_type=guessed if guessed and guessed.startswith("audio/") else None))
    return _reply(_joined(*lines), media)


def _link(element: dict[str, Any], key: str, cx: bool) -> str:
    # CX Messenger links are `anchor.href`; ES Messenger's are `link` / `actionLink`.
    if cx:
        return _str(_dict(element.get("anchor")).get("href"))
    return _str(element.get(key))


def rich_content(payload: Any, *, cx: bool = False) -> list[Reply]:
    """Dialogflow Messenger's `richContent` (a list of lists of elements) as replies."""
    replies: list[Reply] = []
    for group in _list(_dict(payload).get("richContent")):
        texts: list[str] = []
        media: list[Media] = []
        options: list[Option] = []
        for element in _list(group):
            element = _dict(element)
            kind = _str(element.get("type"))
            if kind in ("info", "description", "accordion", "list"):
                lines = [_str(x) for x in _list(element.get("text"))] if kind == "description" else []
                texts.append(_joined(_str(element.get("title")), _str(element.get("subtitle")), *lines))
                if kind == "accordion":
                    texts.append(_str(element.get("text")))
                link = _link(element, "actionLink", cx)
                if link and _is_link(link):
                    texts.append(link)
            elif kind == "image":
                url = _str(element.get("rawUrl"))
                if url:
                    media.append(Media(url=url, caption=_str(element.get("accessibilityText")) or None))
            elif kind == "button":
                links: list[str] = []
                _button(_str(element.get("text")), _link(element, "link", cx), options, links)
                texts.extend(links)
            elif kind == "chips":
                for chip in _list(element.get("options")):
                    chip = _dict(chip)
                    _button(_str(chip.get("text")), _link(chip, "link", cx), options, texts)
        reply = _reply(_joined(*texts), media, options)
        if reply is not None:
            replies.append(reply)
    return replies


# ES has no hand-off message: a custom payload with one of these keys set to true asks for
# one (the name CX uses for its own hand-off message, or plainly "handoff").
HANDOFF_KEYS = ("liveAgentHandoff", "handoff")


def _payload(message: dict[str, Any]) -> list[Reply]:
    payload = _dict(message.get("payload"))
    replies = rich_content(payload)
    if any(payload.get(key) is True for key in HANDOFF_KEYS):
        replies.append(Reply(signals=["handoff"]))
    return replies


Renderer = Callable[[dict[str, Any]], Reply | None]

# An IntentMessage has exactly one of these fields (`payload` aside): it picks the renderer.
_ES_KINDS: dict[str, Renderer] = {
    "text": _text_message,
    "quickReplies": _quick_replies,
    "card": _card,
    "image": _image,
    "simpleResponses": _simple_responses,
    "suggestions": _suggestions,
    "linkOutSuggestion": _link_out,
    "basicCard": _basic_card,
    "listSelect": _list_select,
    "carouselSelect": _carousel_select,
    "browseCarouselCard": _browse_carousel,
    "tableCard": _table_card,
    "mediaContent": _media_content,
}


def _platform(message: dict[str, Any]) -> str:
    return _str(message.get("platform")) or UNSPECIFIED


def select_messages(messages: list[dict[str, Any]], platform: str | None) -> list[dict[str, Any]]:
    """The messages meant for us: the configured platform's, else the default platform's.

    An agent answers with every platform's variants at once; showing them all
    would repeat itself. With no default-platform message at all, the first
    platform that answered is used.
    """
    by_platform: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        by_platform.setdefault(_platform(message), []).append(message)
    for wanted in (platform, UNSPECIFIED):
        if wanted and wanted in by_platform:
            return by_platform[wanted]
    return next(iter(by_platform.values()), [])


def es_replies(body: Any, platform: str | None = None) -> list[Reply]:
    """The replies of an ES `detectIntent` response body."""
    result = _dict(_dict(body).get("queryResult"))
    messages = [_dict(m) for m in _list(result.get("fulfillmentMessages")) if _dict(m)]
    replies: list[Reply] = []
    for message in select_messages(messages, platform):
        if "payload" in message:
            replies.extend(_payload(message))
            continue
        for kind, parse in _ES_KINDS.items():
            if kind in message:
                reply = parse(message)
                if reply is not None:
                    replies.append(reply)
                break
    if not replies:
        text = _str(result.get("fulfillmentText"))
        if text:
            replies.append(Reply(text=text))
    return replies


def _knowledge_card(message: dict[str, Any]) -> Reply | None:
    # A marker without content: "show the knowledge answer". The answer itself is the
    # turn's text (or `dataStoreConnectionSignals.answer`, see `cx_replies`).
    return None


# A ResponseMessage has exactly one of these fields (`payload` aside).
_CX_KINDS: dict[str, Renderer] = {
    "text": _text_message,
    "knowledgeInfoCard": _knowledge_card,
    "liveAgentHandoff": lambda message: Reply(signals=["handoff"]),
    "endInteraction": lambda message: Reply(signals=["end"]),
}


def _shown(reply: Reply) -> bool:
    return bool(reply.text or reply.media or reply.options)


def cx_replies(body: Any) -> list[Reply]:
    """The replies of a CX `detectIntent` response body."""
    result = _dict(_dict(body).get("queryResult"))
    messages = [_dict(m) for m in _list(result.get("responseMessages"))]
    replies: list[Reply] = []
    for message in messages:
        if "payload" in message:
            replies.extend(rich_content(message.get("payload"), cx=True))
            continue
        for kind, render in _CX_KINDS.items():
            if kind in message:
                reply = render(message)
                if reply is not None:
                    replies.append(reply)
                break
    if any("knowledgeInfoCard" in m for m in messages) and not any(_shown(r) for r in replies):
        # The card asks for the knowledge answer; with no text message carrying it, the
        # data store's answer is what the user asked for: the turn must not go silent.
        answer = _str(_dict(result.get("dataStoreConnectionSignals")).get("answer"))
        if answer:
            replies.append(Reply(text=answer))
    return replies


def error_message(body: Any) -> str:
    """Google's `{"error": {"code", "message", "status"}}` as one short line."""
    error = _dict(_dict(body).get("error"))
    status = _str(error.get("status"))
    message = _str(error.get("message"))
    text = f"{status}: {message}" if status and message else status or message
    return " ".join(text.split())[:300]
