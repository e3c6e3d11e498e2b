"""Dialogflow responses as channel-neutral `Reply` objects.

ES: `queryResult.fulfillmentMessages` (text, quickReplies, card, image,
simpleResponses, suggestions, linkOutSuggestion, payload with Dialogflow
Messenger `richContent`), falling back to `queryResult.fulfillmentText`.
CX: `queryResult.responseMessages` (text, payload). Anything else (audio,
telephony, hand-off markers) carries nothing a text channel can show and is
skipped. Input is untrusted: wrong types are ignored, never raised on.
"""

from __future__ import annotations

from typing import Any

from botbridge import Media, Option, Reply

UNSPECIFIED = "PLATFORM_UNSPECIFIED"


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


def _payload(message: dict[str, Any]) -> list[Reply]:
    return rich_content(message.get("payload"))


_ES_KINDS = {
    "text": _text_message,
    "quickReplies": _quick_replies,
    "card": _card,
    "image": _image,
    "simpleResponses": _simple_responses,
    "suggestions": _suggestions,
    "linkOutSuggestion": _link_out,
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


def cx_replies(body: Any) -> list[Reply]:
    """The replies of a CX `detectIntent` response body."""
    result = _dict(_dict(body).get("queryResult"))
    replies: list[Reply] = []
    for message in _list(result.get("responseMessages")):
        message = _dict(message)
        if "text" in message:
            reply = _text_message(message)
            if reply is not None:
                replies.append(reply)
        elif "payload" in message:
            replies.extend(rich_content(message.get("payload"), cx=True))
        elif "liveAgentHandoff" in message:
            replies.append(Reply(signals=["handoff"]))
        elif "endInteraction" in message:
            replies.append(Reply(signals=["end"]))
    return replies


def error_message(body: Any) -> str:
    """Google's `{"error": {"code", "message", "status"}}` as one short line."""
    error = _dict(_dict(body).get("error"))
    status = _str(error.get("status"))
    message = _str(error.get("message"))
    text = f"{status}: {message}" if status and message else status or message
    return " ".join(text.split())[:300]
